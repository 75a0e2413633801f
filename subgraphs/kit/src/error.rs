//! Error codes a client can rely on, and the conversion of every error a resolver can meet
//! into a GraphQL error. Client errors go back as they are; internal ones are logged with
//! their cause and the client sees a generic message.

use async_graphql::ErrorExtensions;
#[cfg(feature = "db")]
use sea_orm::{DbErr, SqlErr};

/// The stable `errors[].extensions.code` values of the public contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    RateLimited,
    /// A subscription past the limit of its connection or process (`extensions.limit`
    /// says which).
    TooManySubscriptions,
    InternalServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// An error a resolver returns. `field` names the offending input field for
/// `BAD_USER_INPUT` and `CONFLICT`; `retry_after_secs` tells a throttled client when to
/// come back; `limit` names the limit a refused request reached.
///
/// Deliberately not `Display`: async-graphql turns every `Display` type into an error
/// without a code, so this type converts only through its own `From`, which keeps the code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
    pub limit: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
            limit: None,
        }
    }

    /// A subscription refused because `limit` (`subscriptionsPerConnection`,
    /// `subscriptionsPerProcess`) is reached.
    pub fn too_many_subscriptions(limit: &'static str, max: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::new(
                ErrorCode::TooManySubscriptions,
                format!("at most {max} subscriptions at once ({limit}); end one first"),
            )
        }
    }

    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(ErrorCode::BadUserInput, message)
        }
    }

    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(ErrorCode::Conflict, message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many attempts; try again in {retry_after_secs} s"),
            )
        }
    }

    /// Logs `cause` with its context and returns the generic error a client may see.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(ErrorCode::InternalServerError, "internal server error")
    }
}

#[cfg(feature = "db")]
impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        Self::internal("database error", err)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        async_graphql::Error::new(err.message.clone()).extend_with(|_, ext| {
            ext.set("code", err.code.as_str());
            if let Some(field) = err.field {
                ext.set("field", field);
            }
            if let Some(secs) = err.retry_after_secs {
                ext.set("retryAfter", secs);
            }
            if let Some(limit) = err.limit {
                ext.set("limit", limit);
            }
        })
    }
}

/// The result type of service functions.
pub type ApiResult<T> = Result<T, ApiError>;

/// Turns a unique-constraint violation into a client error built by `on_unique`; any other
/// database error stays internal.
#[cfg(feature = "db")]
pub fn on_unique_violation(err: DbErr, on_unique: impl FnOnce(&str) -> ApiError) -> ApiError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(detail)) => on_unique(&detail),
        _ => ApiError::from(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_input_error_carries_its_code_and_field() {
        let err: async_graphql::Error = ApiError::bad_input("username", "too short").into();
        let ext = err.extensions.expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            ext.get("field"),
            Some(&async_graphql::Value::from("username"))
        );
    }

    #[test]
    fn an_internal_error_hides_its_cause() {
        let err = ApiError::internal("while testing", "secret detail");
        assert_eq!(err.message, "internal server error");
        assert_eq!(err.code, ErrorCode::InternalServerError);
    }
}
