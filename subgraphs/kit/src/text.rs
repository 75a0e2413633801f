//! The rules every piece of text a client sends follows, whichever subgraph keeps it, so
//! that SQLite and PostgreSQL answer alike: PostgreSQL cannot store a NUL byte at all
//! (the write would fail as an internal error) while SQLite stores it, so both refuse it
//! here first.
//!
//! - No control characters (Unicode `Cc`: C0, DEL and C1), except line breaks (`\n`,
//!   `\r`) and tabs in text that has lines (post and comment bodies, bios).
//! - Text made only of whitespace and default-ignorable characters (zero-width spaces and
//!   joiners, soft hyphens, direction marks, variation selectors, fillers: Unicode's
//!   `Default_Ignorable_Code_Point`) shows nothing, so it counts as empty.

use crate::ApiError;

/// Whether a kind of text may span several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Bodies and bios: line breaks and tabs are kept.
    Allowed,
    /// Names, logins, usernames: one line.
    Refused,
}

/// `BAD_USER_INPUT` naming `field` when `text` holds a control character that `lines` does
/// not allow.
pub fn refuse_control_characters(
    text: &str,
    field: &'static str,
    what: &str,
    lines: Lines,
) -> Result<(), ApiError> {
    let allowed = |c: char| lines == Lines::Allowed && matches!(c, '\n' | '\r' | '\t');
    match text.chars().find(|c| c.is_control() && !allowed(*c)) {
        None => Ok(()),
        Some(c) => Err(ApiError::bad_input(
            field,
            format!(
                "{what} may not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        )),
    }
}

/// Whether `text` shows nothing: only whitespace and default-ignorable characters.
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || is_default_ignorable(c))
}

/// Unicode 16's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt), which changes
/// rarely enough to list here rather than pull in a crate for one property.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_byte_is_refused_in_any_text() {
        for lines in [Lines::Allowed, Lines::Refused] {
            let err = refuse_control_characters("a\0b", "body", "a post", lines)
                .expect_err("NUL refused");
            assert_eq!(err.field, Some("body"));
            assert!(err.message.contains("U+0000"), "{}", err.message);
        }
    }

    #[test]
    fn other_c0_del_and_c1_controls_are_refused() {
        for c in ['\u{1}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
            let text = format!("a{c}b");
            assert!(refuse_control_characters(&text, "f", "it", Lines::Allowed).is_err());
        }
    }

    #[test]
    fn line_breaks_and_tabs_are_kept_only_where_text_has_lines() {
        let text = "one\r\ntwo\tthree\n";
        assert!(refuse_control_characters(text, "body", "a post", Lines::Allowed).is_ok());
        assert!(refuse_control_characters(text, "name", "a name", Lines::Refused).is_err());
    }

    #[test]
    fn text_of_only_zero_width_characters_and_spaces_is_blank() {
        assert!(is_blank(
            "\u{200B}\u{200C}\u{200D}\u{FEFF} \u{2060}\u{00AD}\n"
        ));
        assert!(is_blank(""));
        assert!(!is_blank("\u{200B}a"));
        assert!(!is_blank("👍"));
    }
}
