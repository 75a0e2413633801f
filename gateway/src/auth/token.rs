//! Where a request carries its access token: a header (name and prefix configurable) or,
//! when that header is absent, a cookie.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderName};

use super::config::TokenSourceSettings;

/// What the request's credentials are, before any signature is checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// No token: an anonymous request.
    Nothing,
    /// The header is there but holds no token after the prefix (or is not text).
    Malformed,
    Token(&'a str),
}

/// The configured place of the token.
#[derive(Debug, Clone)]
pub(crate) struct TokenSource {
    header: HeaderName,
    prefix: String,
    cookie: Option<String>,
}

impl Default for TokenSource {
    fn default() -> Self {
        Self::new(&TokenSourceSettings::default())
    }
}

impl TokenSource {
    /// `settings` were checked when the file loaded; an unusable header name falls back to
    /// `authorization`.
    pub(crate) fn new(settings: &TokenSourceSettings) -> Self {
        Self {
            header: HeaderName::from_bytes(settings.header.trim().as_bytes())
                .unwrap_or(axum::http::header::AUTHORIZATION),
            prefix: settings.prefix.trim().to_owned(),
            cookie: settings.cookie.clone().filter(|name| !name.is_empty()),
        }
    }

    pub(crate) fn read<'a>(&self, headers: &'a HeaderMap) -> Presented<'a> {
        if let Some(value) = headers.get(&self.header) {
            let Ok(value) = value.to_str() else {
                return Presented::Malformed;
            };
            return match self.strip_prefix(value.trim()) {
                Some(token) if !token.is_empty() => Presented::Token(token),
                _ => Presented::Malformed,
            };
        }
        let Some(cookie) = &self.cookie else {
            return Presented::Nothing;
        };
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| name.trim() == cookie)
            .map_or(Presented::Nothing, |(_, token)| {
                match token.trim().trim_matches('"') {
                    "" => Presented::Malformed,
                    token => Presented::Token(token),
                }
            })
    }

    fn strip_prefix<'a>(&self, value: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return Some(value);
        }
        let head = value.get(..self.prefix.len())?;
        head.eq_ignore_ascii_case(&self.prefix)
            .then(|| value[self.prefix.len()..].trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn source(header: &str, prefix: &str, cookie: Option<&str>) -> TokenSource {
        TokenSource::new(&TokenSourceSettings {
            header: header.into(),
            prefix: prefix.into(),
            cookie: cookie.map(Into::into),
        })
    }

    #[test]
    fn the_bearer_prefix_is_matched_without_regard_to_case() {
        let source = TokenSource::default();
        assert_eq!(
            source.read(&headers(&[("authorization", "bearer abc")])),
            Presented::Token("abc")
        );
        assert_eq!(
            source.read(&headers(&[("authorization", "Basic abc")])),
            Presented::Malformed
        );
        assert_eq!(
            source.read(&headers(&[("authorization", "Bearer ")])),
            Presented::Malformed
        );
        assert_eq!(source.read(&HeaderMap::new()), Presented::Nothing);
    }

    #[test]
    fn a_custom_header_without_prefix_holds_the_whole_token() {
        let source = source("x-access-token", "", None);
        assert_eq!(
            source.read(&headers(&[("x-access-token", "abc")])),
            Presented::Token("abc")
        );
        assert_eq!(
            source.read(&headers(&[("authorization", "Bearer abc")])),
            Presented::Nothing
        );
    }

    #[test]
    fn the_cookie_is_read_only_when_the_header_is_absent() {
        let source = source("authorization", "Bearer ", Some("access_token"));
        let cookies = headers(&[("cookie", "theme=dark; access_token=abc; other=1")]);
        assert_eq!(source.read(&cookies), Presented::Token("abc"));
        let both = headers(&[
            ("cookie", "access_token=abc"),
            ("authorization", "Bearer xyz"),
        ]);
        assert_eq!(source.read(&both), Presented::Token("xyz"));
        assert_eq!(
            source.read(&headers(&[("cookie", "theme=dark")])),
            Presented::Nothing
        );
    }
}
