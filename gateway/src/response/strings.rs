//! JSON strings written straight to the response bytes.

/// A JSON string. Most strings need no escaping: they are copied between quotes as they
/// are; the others go through `serde_json`.
pub fn write_string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // No early exit: the loop compiles to a vectorized scan.
    let escapes = bytes.iter().fold(false, |found, &byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if !escapes {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    // A `str` always serializes.
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::write_string;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for value in [
            "",
            "plain",
            "a \"quoted\" word",
            "back\\slash",
            "line\nbreak\tand\u{1}control",
            "ünïcödé ✓ and 🦀",
            "a long enough string to cross a vector width, twice over, with a \" at its end",
        ] {
            let mut out = b"[".to_vec();
            write_string(&mut out, value);
            let expected = format!("[{}", serde_json::to_string(value).expect("a str"));
            assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
        }
    }
}
