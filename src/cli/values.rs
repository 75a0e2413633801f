//! How setting values are read, the same from a flag, an environment variable and the
//! configuration file: durations with a unit or in the unit their name says, booleans as
//! `true`/`false`/`1`/`0` (and `yes`/`no`, `on`/`off`).

use std::time::Duration;

/// Reads booleans: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "`{text}` is not a boolean; write true or false (or 1/0, yes/no, on/off)"
        )),
    }
}

/// A duration in milliseconds: a bare number is milliseconds (`500`), or a number with a
/// unit (`500ms`, `30s`, `5m`).
pub fn millis(text: &str) -> Result<u64, String> {
    let duration = duration(text, Duration::from_millis)?;
    u64::try_from(duration.as_millis())
        .map_err(|_| format!("`{text}` is longer than this setting can hold"))
}

/// A duration in seconds: a bare number is seconds (`30`), or a number with a unit (`30s`,
/// `5m`, `1h`); it must be a whole number of seconds.
pub fn seconds(text: &str) -> Result<u64, String> {
    let duration = duration(text, Duration::from_secs)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("`{text}` is not a whole number of seconds"));
    }
    Ok(duration.as_secs())
}

/// A library default in the milliseconds a `*-ms` flag counts.
pub fn whole_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn duration(text: &str, bare: fn(u64) -> Duration) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<u64>() {
        return Ok(bare(number));
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("`{text}` is not a duration ({err}); write e.g. `500ms`, `30s`, `5m`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boolean_is_true_false_1_0_yes_no_on_off() {
        for yes in ["true", "1", "yes", "on", "TRUE"] {
            assert_eq!(boolean(yes), Ok(true), "{yes}");
        }
        for no in ["false", "0", "no", "off"] {
            assert_eq!(boolean(no), Ok(false), "{no}");
        }
        let err = boolean("maybe").unwrap_err();
        assert!(err.contains("`maybe` is not a boolean"), "{err}");
    }

    #[test]
    fn a_bare_number_is_in_the_unit_of_the_setting() {
        assert_eq!(millis("250"), Ok(250));
        assert_eq!(seconds("30"), Ok(30));
    }

    #[test]
    fn a_duration_with_a_unit_is_converted() {
        assert_eq!(millis("500ms"), Ok(500));
        assert_eq!(millis("30s"), Ok(30_000));
        assert_eq!(millis("5m"), Ok(300_000));
        assert_eq!(seconds("5m"), Ok(300));
        assert_eq!(seconds("1h 30m"), Ok(5_400));
    }

    #[test]
    fn a_fraction_of_a_second_is_refused_where_seconds_are_counted() {
        let err = seconds("1500ms").unwrap_err();
        assert!(err.contains("whole number of seconds"), "{err}");
    }

    #[test]
    fn text_that_is_no_duration_is_refused_with_an_example() {
        let err = millis("soon").unwrap_err();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        assert!(err.contains("30s"), "{err}");
        assert!(millis("-5").is_err());
    }
}
