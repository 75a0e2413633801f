//! Who is asking. Over HTTP the viewer is read from `Authorization: Bearer <token>`; when
//! the gateway calls a subgraph in-process it hands over a [`ViewerState`] it verified
//! itself. Public fields ask [`ViewerState::viewer`] (a bad token reads as anonymous);
//! fields that need a viewer ask through `gantry_kit::context`, which turns its absence into
//! `UNAUTHENTICATED`.

use axum::http::{HeaderMap, header::AUTHORIZATION};
use uuid::Uuid;

pub use crate::client::ClientAddr;
use crate::jwt::{TokenError, TokenVerifier};

/// A verified signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: Uuid,
    /// The session (refresh-token family) the access token belongs to.
    pub session_id: Uuid,
}

/// What the request's credentials amount to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ViewerState {
    #[default]
    Anonymous,
    Authenticated(Viewer),
    /// A token was sent and refused.
    Rejected(TokenError),
}

impl ViewerState {
    pub fn from_headers(headers: &HeaderMap, verifier: &TokenVerifier) -> Self {
        match headers.get(AUTHORIZATION) {
            None => Self::Anonymous,
            Some(value) => Self::from_authorization(value.to_str().ok(), verifier),
        }
    }

    /// Reads an `Authorization` header value (`None` when it was not valid text).
    pub fn from_authorization(value: Option<&str>, verifier: &TokenVerifier) -> Self {
        let token = value.and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        match token {
            None => Self::Rejected(TokenError::Malformed),
            Some(token) => match verifier.verify(token) {
                Ok(claims) => Self::Authenticated(Viewer {
                    user_id: claims.sub,
                    session_id: claims.sid,
                }),
                Err(err) => Self::Rejected(err),
            },
        }
    }

    /// The viewer if the token was good; public data treats anything else as anonymous.
    pub fn viewer(&self) -> Option<Viewer> {
        match self {
            Self::Authenticated(viewer) => Some(*viewer),
            _ => None,
        }
    }
}

/// What the gateway hands a subgraph it calls in-process, in place of the HTTP headers it
/// would otherwise forward: the viewer it verified and the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub viewer: ViewerState,
    pub client: Option<ClientAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtSettings;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&[], &JwtSettings::default()).expect("verifier")
    }

    #[test]
    fn no_header_is_anonymous() {
        assert_eq!(
            ViewerState::from_headers(&HeaderMap::new(), &verifier()),
            ViewerState::Anonymous
        );
    }

    #[test]
    fn a_header_without_bearer_is_malformed() {
        let state = ViewerState::from_authorization(Some("Basic abc"), &verifier());
        assert_eq!(state, ViewerState::Rejected(TokenError::Malformed));
        assert_eq!(state.viewer(), None);
    }
}
