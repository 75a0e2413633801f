//! What a resolver reads from the async-graphql context about who is asking: the
//! [`ViewerState`] the request handed over, and the viewer a field needs, as
//! `UNAUTHENTICATED` when there is none.

use crate::error::ApiError;
use crate::viewer::{Viewer, ViewerState};

/// Reads the viewer a request handed to the resolvers (anonymous when none was).
pub fn viewer_state<'a>(ctx: &async_graphql::Context<'a>) -> &'a ViewerState {
    static ANONYMOUS: ViewerState = ViewerState::Anonymous;
    ctx.data_opt::<ViewerState>().unwrap_or(&ANONYMOUS)
}

/// The viewer a field cannot do without.
pub trait RequireViewer {
    /// The viewer, or `UNAUTHENTICATED` saying why there is none.
    fn require(&self) -> Result<Viewer, ApiError>;
}

impl RequireViewer for ViewerState {
    fn require(&self) -> Result<Viewer, ApiError> {
        match self {
            Self::Authenticated(viewer) => Ok(*viewer),
            Self::Anonymous => Err(ApiError::unauthenticated("sign in to do this")),
            Self::Rejected(err) => Err(ApiError::unauthenticated(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::jwt::TokenError;

    #[test]
    fn a_refused_token_is_unauthenticated_and_says_why() {
        let err = ViewerState::Rejected(TokenError::Expired)
            .require()
            .expect_err("no viewer");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
        assert_eq!(err.message, TokenError::Expired.to_string());
    }

    #[test]
    fn no_token_is_unauthenticated() {
        let err = ViewerState::Anonymous.require().expect_err("no viewer");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }
}
