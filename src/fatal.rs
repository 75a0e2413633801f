//! How a command that cannot go on says why: once, on stderr, as one line that names each
//! cause once. Error types often print their source inside their own message and then
//! hand it on as their source too, so a plain `{:#}` says "X: X"; here a cause already
//! contained in the text before it is left out.

/// Prints `err` once: a JSON log line when logs are JSON (so a log collector gets it),
/// else a plain `error: …` line.
pub fn report(err: &anyhow::Error) {
    let message = describe(err);
    if crate::telemetry::json_logs() {
        tracing::error!(error = %message, "stopped");
    } else {
        eprintln!("error: {message}");
    }
}

/// Every cause of `err`, outermost first, joined with `: `, each said once.
pub fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection error: {0}")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn a_cause_repeated_by_its_wrapper_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(Wrapper(io)).context("connecting to the database");
        assert_eq!(
            describe(&err),
            "connecting to the database: connection error: refused"
        );
    }
}
