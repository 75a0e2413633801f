//! Account input, parsed once at the edge into types that cannot hold a bad value.
//! Each rule is pinned by a unit test named after it.

use gantry_kit::ApiError;

/// 3–30 characters of `[a-z0-9_]`. Uppercase input is folded to lowercase first, so
/// `Alice` and `alice` are the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
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

/// 8–128 characters. Never logged: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, ApiError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(ApiError::bad_input(
                field,
                "password must be 8 to 128 characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// 1–100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(1..=100).contains(&len) {
            return Err(ApiError::bad_input(
                "displayName",
                "display name must be 1 to 100 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::bad_input(
                "displayName",
                "display name may not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// At most 500 characters after trimming; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

impl Bio {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let bio = raw.trim();
        if bio.chars().count() > 500 {
            return Err(ApiError::bad_input(
                "bio",
                "bio must be at most 500 characters",
            ));
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

    #[test]
    fn a_password_outside_eight_to_128_characters_is_rejected() {
        assert!(Password::parse("1234567", "password").is_err());
        assert!(Password::parse(&"x".repeat(129), "password").is_err());
        assert!(Password::parse("12345678", "password").is_ok());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::parse("hunter2hunter2", "password").expect("valid");
        assert!(!format!("{password:?}").contains("hunter2"));
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
