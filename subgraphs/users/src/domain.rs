//! Account input, parsed once at the edge into types that cannot hold a bad value.
//! Each rule is pinned by a unit test named after it.

use gantry_kit::ApiError;
use gantry_kit::text::{Lines, is_blank, refuse_control_characters};

/// 3–30 characters of `[a-z0-9_]`. Uppercase input is folded to lowercase first, so
/// `Alice` and `alice` are the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        refuse_control_characters(raw, "username", "a username", Lines::Refused)?;
        let name = raw.trim().to_lowercase();
        let len = name.chars().count();
        if !(3..=30).contains(&len) {
            return Err(ApiError::bad_input(
                "username",
                "username must be 3 to 30 characters",
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ApiError::bad_input(
                "username",
                "username may contain only letters a-z, digits and underscores",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A syntactically valid address of at most 254 characters, kept as typed (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        refuse_control_characters(raw, "email", "an email address", Lines::Refused)?;
        let email = raw.trim();
        let invalid = || ApiError::bad_input("email", "email is not a valid address");
        if email.len() > 254 {
            return Err(invalid());
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            email,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|_| invalid())?;
        // Require a dotted domain: `a@localhost` is valid RFC 5322 but never a real inbox.
        if !parsed.domain().contains('.') {
            return Err(invalid());
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8–128 characters, hard to guess (a zxcvbn score of at least
/// [`Password::MIN_SCORE`]: common and breached-list passwords, keyboard walks, repeats
/// and dates score lower), and neither equal to nor containing the account's username or
/// email, whatever the case. Never logged: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// zxcvbn's 3: "safely unguessable", about 10^8 guesses and more.
    pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

    /// `account` holds what the password must not be built from: the username, email and
    /// display name.
    pub fn parse(raw: &str, field: &'static str, account: &[&str]) -> Result<Self, ApiError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(ApiError::bad_input(
                field,
                "password must be 8 to 128 characters",
            ));
        }
        let folded = raw.to_lowercase();
        let names = account
            .iter()
            .take(2)
            .map(|name| name.trim().to_lowercase());
        if names
            .filter(|name| name.chars().count() >= 3)
            .any(|name| folded.contains(&name))
        {
            return Err(ApiError::bad_input(
                field,
                "password must not contain your username or email",
            ));
        }
        let estimate = zxcvbn::zxcvbn(raw, account);
        if estimate.score() < Self::MIN_SCORE {
            let mut message = String::from("password is too easy to guess");
            if let Some(warning) = estimate.feedback().and_then(|f| f.warning()) {
                message.push_str(&format!(": {warning}"));
            }
            message.push_str("; try a few unrelated words, or a longer passphrase");
            return Err(ApiError::bad_input(field, message));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// 1–100 characters after trimming, no control characters, not only invisible ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        refuse_control_characters(raw, "displayName", "a display name", Lines::Refused)?;
        let name = raw.trim();
        let len = name.chars().count();
        if !(1..=100).contains(&len) || is_blank(name) {
            return Err(ApiError::bad_input(
                "displayName",
                "display name must be 1 to 100 characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// At most 500 characters after trimming, no control characters but line breaks and
/// tabs; may be empty (a bio of only invisible characters is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

impl Bio {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        refuse_control_characters(raw, "bio", "a bio", Lines::Allowed)?;
        let bio = raw.trim();
        if bio.chars().count() > 500 {
            return Err(ApiError::bad_input(
                "bio",
                "bio must be at most 500 characters",
            ));
        }
        if is_blank(bio) {
            return Ok(Self(String::new()));
        }
        Ok(Self(bio.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: ApiError) -> Option<&'static str> {
        err.field
    }

    #[test]
    fn a_username_shorter_than_three_characters_is_rejected() {
        assert_eq!(
            field(Username::parse("ab").expect_err("short")),
            Some("username")
        );
    }

    #[test]
    fn a_username_longer_than_thirty_characters_is_rejected() {
        assert!(Username::parse(&"a".repeat(31)).is_err());
        assert!(Username::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn a_username_with_other_characters_is_rejected() {
        for bad in ["ali ce", "alice!", "al-ice", "ålice", "alice.b"] {
            assert!(Username::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn a_username_is_folded_to_lowercase() {
        assert_eq!(
            Username::parse("Alice_99").expect("valid").as_str(),
            "alice_99"
        );
    }

    #[test]
    fn an_email_without_an_at_sign_or_dotted_domain_is_rejected() {
        for bad in [
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
        ] {
            assert_eq!(field(Email::parse(bad).expect_err(bad)), Some("email"));
        }
        assert!(Email::parse(" Alice@Example.com ").is_ok());
    }

    const ALICE: &[&str] = &["alice", "alice@example.com", "Alice Liddell"];

    #[test]
    fn a_password_outside_eight_to_128_characters_is_rejected() {
        assert!(Password::parse("Qz7!", "password", ALICE).is_err());
        assert!(Password::parse(&"x".repeat(129), "password", ALICE).is_err());
        assert!(Password::parse("tangerine orbit ledger", "password", ALICE).is_ok());
    }

    #[test]
    fn a_common_or_breached_password_is_rejected() {
        for weak in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
            "Password1!",
        ] {
            let err = Password::parse(weak, "password", ALICE).expect_err(weak);
            assert_eq!(err.field, Some("password"));
            assert!(err.message.contains("too easy to guess"), "{}", err.message);
        }
    }

    #[test]
    fn a_password_of_eight_spaces_is_rejected() {
        assert!(Password::parse("        ", "password", ALICE).is_err());
    }

    #[test]
    fn a_password_equal_to_or_containing_the_username_or_email_is_rejected() {
        for weak in ["alice", "ALICE", "Alice@Example.com", "xyz-alice-qvw-8841"] {
            let padded = format!("{weak:<8}");
            let err = Password::parse(&padded, "password", ALICE).expect_err(weak);
            assert_eq!(err.field, Some("password"));
        }
        let err = Password::parse("my alice secret 77", "password", ALICE).expect_err("contains");
        assert!(err.message.contains("username or email"), "{}", err.message);
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::parse("hunter2 orbit ledger", "password", ALICE).expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
    }

    #[test]
    fn a_nul_byte_in_a_username_email_display_name_or_bio_is_rejected() {
        assert_eq!(
            field(Username::parse("ali\0ce").expect_err("nul")),
            Some("username")
        );
        assert_eq!(
            field(Email::parse("ali\0ce@example.com").expect_err("nul")),
            Some("email")
        );
        assert_eq!(
            field(DisplayName::parse("Ali\0ce").expect_err("nul")),
            Some("displayName")
        );
        assert_eq!(field(Bio::parse("hi\0").expect_err("nul")), Some("bio"));
        assert!(Bio::parse("line one\nline two").is_ok());
    }

    #[test]
    fn a_display_name_of_only_zero_width_characters_is_rejected() {
        assert!(DisplayName::parse("\u{200B}\u{200D} \u{FEFF}").is_err());
        assert_eq!(Bio::parse("\u{200B}").expect("blank").into_inner(), "");
    }

    #[test]
    fn an_empty_display_name_is_rejected() {
        assert!(DisplayName::parse("   ").is_err());
        assert_eq!(
            DisplayName::parse(" Alice ").expect("valid").into_inner(),
            "Alice"
        );
    }

    #[test]
    fn a_bio_over_500_characters_is_rejected() {
        assert!(Bio::parse(&"b".repeat(501)).is_err());
        assert!(Bio::parse("").is_ok());
    }
}
