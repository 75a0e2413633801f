//! The token and nesting scan over a document's text, before it is parsed. It knows just
//! enough of GraphQL's lexical grammar to count what the parser would: punctuators, names,
//! numbers, strings and block strings (whose braces are text, not nesting), and skips what
//! the parser ignores (whitespace, commas, comments, a byte-order mark).

use super::{LimitExceeded, OperationLimits, names};

/// What the scan found in a document within the limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TextFigures {
    pub tokens: u64,
    /// The deepest nesting of `{`, `[` and `(`.
    pub nesting: u64,
}

/// Counts the tokens and nesting of `text`, stopping at the first limit it passes.
pub(crate) fn scan(text: &str, limits: &OperationLimits) -> Result<TextFigures, LimitExceeded> {
    let bytes = text.as_bytes();
    let mut figures = TextFigures::default();
    let mut depth: u64 = 0;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            b'#' => {
                at = skip_comment(bytes, at);
                continue;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(LimitExceeded::new(names::NESTING, limits.max_nesting, None));
                }
                figures.nesting = figures.nesting.max(depth);
                at += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b'"' => at = skip_string(bytes, at),
            b'.' => at = skip_while(bytes, at, 3, |b| b == b'.'),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                at = skip_while(bytes, at, usize::MAX, |b| {
                    b == b'_' || b.is_ascii_alphanumeric()
                });
            }
            b'-' | b'0'..=b'9' => at = skip_number(bytes, at),
            // The byte-order mark, which the parser ignores.
            0xEF if bytes.get(at..at + 3) == Some(&[0xEF, 0xBB, 0xBF]) => {
                at += 3;
                continue;
            }
            // Punctuators, and anything the parser will refuse: one token each.
            _ => at += char_len(byte),
        }
        figures.tokens += 1;
        if figures.tokens > limits.max_tokens {
            return Err(LimitExceeded::new(names::TOKENS, limits.max_tokens, None));
        }
    }
    Ok(figures)
}

/// The length of the UTF-8 character that starts with `byte` (1 for anything else).
fn char_len(byte: u8) -> usize {
    match byte {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Past the run of bytes from `at` that satisfy `keep`, at most `max` of them (at least one).
fn skip_while(bytes: &[u8], at: usize, max: usize, keep: impl Fn(u8) -> bool) -> usize {
    let mut end = at + 1;
    while end < bytes.len() && end - at < max && keep(bytes[end]) {
        end += 1;
    }
    end
}

fn skip_comment(bytes: &[u8], at: usize) -> usize {
    let mut end = at;
    while end < bytes.len() && bytes[end] != b'\n' && bytes[end] != b'\r' {
        end += 1;
    }
    end
}

/// Past an Int or Float: `-`, digits, `.`, an exponent with its sign.
fn skip_number(bytes: &[u8], at: usize) -> usize {
    let mut end = at + 1;
    while end < bytes.len() {
        let byte = bytes[end];
        let signed_exponent =
            (byte == b'+' || byte == b'-') && matches!(bytes[end - 1], b'e' | b'E');
        if byte.is_ascii_alphanumeric() || byte == b'.' || signed_exponent {
            end += 1;
        } else {
            break;
        }
    }
    end
}

/// Past a string (`"…"`, with escapes, ending at the line's end when unterminated) or a
/// block string (`"""…"""`, where `\"""` is an escaped quote triple).
fn skip_string(bytes: &[u8], at: usize) -> usize {
    if bytes.get(at..at + 3) == Some(b"\"\"\"") {
        let mut end = at + 3;
        while end < bytes.len() {
            if bytes[end] == b'\\' && bytes.get(end + 1..end + 4) == Some(b"\"\"\"") {
                end += 4;
            } else if bytes.get(end..end + 3) == Some(b"\"\"\"") {
                return end + 3;
            } else {
                end += 1;
            }
        }
        return end;
    }
    let mut end = at + 1;
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => return end + 1,
            b'\n' | b'\r' => return end,
            _ => end += 1,
        }
    }
    end.min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_tokens: u64, max_nesting: u64) -> OperationLimits {
        OperationLimits {
            max_tokens,
            max_nesting,
            ..OperationLimits::default()
        }
    }

    fn figures(text: &str) -> TextFigures {
        scan(text, &limits(u64::MAX, u64::MAX)).expect("within the limits")
    }

    #[test]
    fn every_punctuator_name_number_and_string_is_one_token() {
        let text =
            r#"query Q($n: Int = -1.5e+3) { a: f(s: "x y", b: [1, 2]) @skip(if: true) ...F }"#;
        // query Q ( $ n : Int = -1.5e+3 ) { a : f ( s : "x y" b : [ 1 2 ] ) @ skip ( if
        // : true ) ... F }
        assert_eq!(figures(text).tokens, 35);
    }

    #[test]
    fn whitespace_commas_comments_and_a_byte_order_mark_are_not_tokens() {
        let text = "\u{feff}# a comment { [ (\n{ a, , b }\r\n# another";
        assert_eq!(
            figures(text),
            TextFigures {
                tokens: 4,
                nesting: 1
            }
        );
    }

    #[test]
    fn braces_inside_strings_and_block_strings_are_not_nesting() {
        let text = r#"{ a(s: "{{{{ \" [[[", t: """ {{{ \""" ((( """) }"#;
        assert_eq!(
            figures(text),
            TextFigures {
                tokens: 11,
                nesting: 2
            }
        );
    }

    #[test]
    fn nesting_counts_braces_brackets_and_parentheses_together() {
        assert_eq!(figures("{ a(x: [[{ y: 1 }]]) { b } }").nesting, 5);
    }

    #[test]
    fn a_document_nested_deeper_than_the_limit_is_refused_before_parsing() {
        let text = format!("{}{}", "{ a ".repeat(33), "}".repeat(33));
        assert_eq!(
            scan(&text, &limits(u64::MAX, 32)),
            Err(LimitExceeded::new(names::NESTING, 32, None))
        );
        let within = format!("{}{}", "{ a ".repeat(32), "}".repeat(32));
        assert_eq!(
            scan(&within, &limits(u64::MAX, 32)).map(|f| f.nesting),
            Ok(32)
        );
    }

    #[test]
    fn a_document_with_more_tokens_than_the_limit_is_refused() {
        let text = format!("{{ {} }}", "a ".repeat(10));
        assert_eq!(scan(&text, &limits(12, 32)).map(|f| f.tokens), Ok(12));
        assert_eq!(
            scan(&text, &limits(11, 32)),
            Err(LimitExceeded::new(names::TOKENS, 11, None))
        );
    }

    #[test]
    fn an_unterminated_string_or_stray_bytes_end_the_scan_without_panicking() {
        for text in [
            "{ a(s: \"open",
            "\"\"\"open",
            "é ü \u{1F600}",
            "\\",
            "-",
            "...",
            "\"\\",
        ] {
            scan(text, &OperationLimits::default()).expect("no limit passed");
        }
    }
}
