//! Cross-origin requests from browsers: which web origins may call the gateway, and the
//! preflight answers they need. Built on tower-http's `CorsLayer`, placed outside the
//! request limits and the GraphQL service, so a preflight `OPTIONS` is answered before any
//! body is read, any limit is counted or any operation is parsed.
//!
//! No origin is allowed unless configured: a browser page on another origin then cannot
//! read the gateway's answers at all, which is the safe default for an API that accepts
//! credentials.

use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// Why a CORS setting was refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsError {
    #[error(
        "CORS origin {0:?} is not `scheme://host[:port]` (a leading `*.` in the host matches any subdomain)"
    )]
    Origin(String),
    #[error(
        "CORS origin `*` (any origin) cannot be combined with credentials: list the origins allowed to send cookies"
    )]
    AnyOriginWithCredentials,
}

/// One entry of the allowed origins: `*` for any, an exact origin, or an origin whose host
/// starts with `*.` to allow every subdomain of the rest (`https://*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact(String),
    /// `scheme://` before the `*`, and `.domain[:port]` after it.
    Subdomains {
        prefix: String,
        suffix: String,
    },
}

impl FromStr for OriginPattern {
    type Err = CorsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        let invalid = || CorsError::Origin(text.to_owned());
        let (scheme, authority) = text.split_once("://").ok_or_else(invalid)?;
        let scheme_ok = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok || authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(invalid());
        }
        let lower = text.to_ascii_lowercase();
        match authority.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') && !rest.starts_with('.') => {
                let prefix = format!("{}://", scheme.to_ascii_lowercase());
                let suffix = lower[prefix.len() + 1..].to_owned();
                Ok(Self::Subdomains { prefix, suffix })
            }
            Some(_) => Err(invalid()),
            None if authority.contains('*') => Err(invalid()),
            None => Ok(Self::Exact(lower)),
        }
    }
}

impl OriginPattern {
    /// Whether the `Origin` a browser sent is allowed by this entry. Origins compare
    /// without regard to ASCII case, as hosts and schemes do.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            Self::Any => true,
            Self::Exact(exact) => origin == *exact,
            Self::Subdomains { prefix, suffix } => origin
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|subdomain| {
                    !subdomain.is_empty()
                        && !subdomain.starts_with('.')
                        && !subdomain.ends_with('.')
                        && subdomain
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                }),
        }
    }
}

/// The CORS policy. An empty `allow_origins` turns CORS off: no CORS headers are sent and
/// browsers keep other origins out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// Origins allowed to call the gateway. Default: none.
    pub allow_origins: Vec<OriginPattern>,
    /// Methods allowed in cross-origin requests. Default: `GET`, `POST`.
    pub allow_methods: Vec<Method>,
    /// Request headers allowed in cross-origin requests; empty allows the headers each
    /// preflight asks for. Default: empty.
    pub allow_headers: Vec<HeaderName>,
    /// Response headers a page's script may read beyond the CORS-safelisted ones.
    /// Default: none.
    pub expose_headers: Vec<HeaderName>,
    /// Let browsers send cookies and read the answer (`Access-Control-Allow-Credentials`).
    /// Default: false.
    pub allow_credentials: bool,
    /// How long a browser may reuse a preflight's answer. Default: none (the browser's own,
    /// five seconds in Chromium).
    pub max_age: Option<Duration>,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: None,
        }
    }
}

impl CorsSettings {
    /// The layer answering preflights and adding CORS headers, or `None` when no origin is
    /// allowed. Refuses a policy that would let any web page send a user's cookies.
    pub fn layer(&self) -> Result<Option<CorsLayer>, CorsError> {
        if self.allow_origins.is_empty() {
            return Ok(None);
        }
        if self.allow_credentials && self.allow_origins.contains(&OriginPattern::Any) {
            return Err(CorsError::AnyOriginWithCredentials);
        }
        let origins = self.allow_origins.clone();
        // A predicate echoes the one allowed origin back (never `*`), which is what a
        // credentialed request needs and what caches vary on.
        let allow_origin = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|origin| origins.iter().any(|pattern| pattern.matches(origin)))
        });
        let allow_headers = if self.allow_headers.is_empty() {
            AllowHeaders::mirror_request()
        } else {
            AllowHeaders::list(self.allow_headers.iter().cloned())
        };
        let mut layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(self.allow_methods.clone())
            .allow_headers(allow_headers)
            .expose_headers(ExposeHeaders::list(self.expose_headers.iter().cloned()))
            .allow_credentials(self.allow_credentials);
        if let Some(max_age) = self.max_age {
            layer = layer.max_age(max_age);
        }
        Ok(Some(layer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> OriginPattern {
        text.parse().unwrap()
    }

    #[test]
    fn an_exact_origin_matches_itself_in_any_case_and_nothing_else() {
        let exact = pattern("https://App.example.com");
        assert!(exact.matches("https://app.example.com"));
        assert!(exact.matches("HTTPS://APP.EXAMPLE.COM"));
        assert!(!exact.matches("http://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        assert!(!exact.matches("https://app.example.com.evil.test"));
        assert!(!exact.matches("null"));
    }

    #[test]
    fn a_subdomain_pattern_matches_subdomains_but_not_the_bare_domain() {
        let subdomains = pattern("https://*.example.com");
        assert!(subdomains.matches("https://app.example.com"));
        assert!(subdomains.matches("https://eu.app.example.com"));
        assert!(!subdomains.matches("https://example.com"));
        assert!(!subdomains.matches("https://.example.com"));
        assert!(!subdomains.matches("http://app.example.com"));
        assert!(!subdomains.matches("https://app.example.com:8443"));
    }

    #[test]
    fn a_subdomain_pattern_does_not_match_a_lookalike_domain() {
        let subdomains = pattern("https://*.example.com");
        assert!(!subdomains.matches("https://evilexample.com"));
        assert!(!subdomains.matches("https://app.example.com.evil.test"));
        assert!(!subdomains.matches("https://evil.test/.example.com"));
        assert!(!subdomains.matches("https://evil.test?.example.com"));
    }

    #[test]
    fn a_subdomain_pattern_keeps_its_port() {
        let subdomains = pattern("http://*.localhost:3000");
        assert!(subdomains.matches("http://web.localhost:3000"));
        assert!(!subdomains.matches("http://web.localhost:3001"));
        assert!(!subdomains.matches("http://web.localhost"));
    }

    #[test]
    fn malformed_origins_are_refused() {
        for text in [
            "example.com",
            "https://",
            "https://example.com/",
            "https://a*.example.com",
            "https://*.",
            "https://*.*.example.com",
            "https://user@example.com",
            "://example.com",
        ] {
            assert_eq!(
                text.parse::<OriginPattern>(),
                Err(CorsError::Origin(text.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn any_origin_with_credentials_is_refused() {
        let settings = CorsSettings {
            allow_origins: vec![OriginPattern::Any],
            allow_credentials: true,
            ..CorsSettings::default()
        };
        assert_eq!(
            settings.layer().err(),
            Some(CorsError::AnyOriginWithCredentials)
        );
    }

    #[test]
    fn no_origins_means_no_cors_layer() {
        assert!(CorsSettings::default().layer().unwrap().is_none());
    }
}
