//! Content input, parsed at the edge. Bodies are trimmed first; an empty or over-long body
//! is `BAD_USER_INPUT` naming the field, and so is one with control characters other than
//! line breaks and tabs ([`gantry_kit::text`]). A body of only invisible characters is
//! empty.

use gantry_kit::ApiError;
use gantry_kit::text::{Lines, is_blank, refuse_control_characters};
use uuid::Uuid;

/// 1–2000 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostBody(String);

impl PostBody {
    pub const MAX: usize = 2000;

    pub fn parse(raw: &str, field: &'static str) -> Result<Self, ApiError> {
        parse_body(raw, Self::MAX, field, "post").map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// 1–1000 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentBody(String);

impl CommentBody {
    pub const MAX: usize = 1000;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        parse_body(raw, Self::MAX, "body", "comment").map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

fn parse_body(raw: &str, max: usize, field: &'static str, what: &str) -> Result<String, ApiError> {
    refuse_control_characters(raw, field, &format!("a {what}"), Lines::Allowed)?;
    let body = raw.trim();
    let len = body.chars().count();
    if is_blank(body) {
        return Err(ApiError::bad_input(
            field,
            format!("a {what} cannot be empty"),
        ));
    }
    if len > max {
        return Err(ApiError::bad_input(
            field,
            format!("a {what} can be at most {max} characters (this one has {len})"),
        ));
    }
    Ok(body.to_owned())
}

/// Parses an id argument; anything but a UUID is `BAD_USER_INPUT` naming the argument.
pub fn parse_id(raw: &str, field: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::bad_input(field, format!("`{field}` is not a valid id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_post_is_rejected() {
        assert_eq!(
            PostBody::parse("  \n ", "body").expect_err("blank").field,
            Some("body")
        );
    }

    #[test]
    fn a_post_over_2000_characters_is_rejected_and_2000_is_fine() {
        assert!(PostBody::parse(&"é".repeat(2001), "body").is_err());
        assert!(PostBody::parse(&"é".repeat(2000), "body").is_ok());
    }

    #[test]
    fn a_body_is_trimmed() {
        assert_eq!(
            PostBody::parse("  hello  ", "body")
                .expect("valid")
                .into_inner(),
            "hello"
        );
    }

    #[test]
    fn a_body_with_a_nul_byte_is_rejected() {
        let err = PostBody::parse("hello\0world", "body").expect_err("NUL");
        assert_eq!(err.field, Some("body"));
        assert!(CommentBody::parse("a\u{7}b").is_err());
    }

    #[test]
    fn a_body_keeps_its_line_breaks_and_tabs() {
        assert_eq!(
            PostBody::parse("one\n\ttwo", "body")
                .expect("valid")
                .into_inner(),
            "one\n\ttwo"
        );
    }

    #[test]
    fn a_body_of_only_zero_width_characters_is_empty() {
        let err = PostBody::parse("\u{200B}\u{200D}\u{2060} \u{FEFF}", "body").expect_err("blank");
        assert!(err.message.contains("cannot be empty"), "{}", err.message);
        assert!(CommentBody::parse("\u{200B}").is_err());
    }

    #[test]
    fn a_comment_over_1000_characters_is_rejected() {
        assert!(CommentBody::parse(&"x".repeat(1001)).is_err());
        assert!(CommentBody::parse(&"x".repeat(1000)).is_ok());
    }

    #[test]
    fn an_id_that_is_not_a_uuid_is_rejected() {
        assert_eq!(
            parse_id("42", "postId").expect_err("bad").field,
            Some("postId")
        );
    }
}
