//! `x-request-id`: every response carries one, so a client can quote it and an operator can
//! find the log lines of that request.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request, in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client's id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]` (so it is safe
/// to log and to echo); anything else is replaced by a fresh UUIDv7.
fn is_acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

/// The id of a request with these headers: the client's, when sane, else a fresh one.
pub(crate) fn id_for(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string)
}

pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = id_for(request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("http_request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept() {
        assert!(is_acceptable("0192f0c1-7d4e-7c6a-9d1e-3a5b7c9d1e2f"));
        assert!(is_acceptable("req_42.a:b"));
    }

    #[test]
    fn an_empty_long_or_odd_client_id_is_replaced() {
        assert!(!is_acceptable(""));
        assert!(!is_acceptable(&"a".repeat(129)));
        assert!(!is_acceptable("id with spaces"));
        assert!(!is_acceptable("<script>"));
    }
}
