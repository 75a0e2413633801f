//! Request bodies, read under two limits: a deadline for the whole body, and a budget of
//! bytes held at once across every request. A body takes its room from the budget before
//! it is read (all of it when `Content-Length` says how much, chunk by chunk otherwise) and
//! gives it back when its request is answered, so many large bodies at once wait in the
//! kernel's socket buffers rather than in this process's memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget and limits of one server's request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    budget: Arc<Semaphore>,
    max_body_bytes: usize,
    read_timeout: Duration,
}

impl BodyLimits {
    /// `max_body_bytes` is the largest single body (larger: `413`); the budget is raised to
    /// it when smaller, so every acceptable body fits.
    pub fn new(bytes_in_flight: usize, max_body_bytes: usize, read_timeout: Duration) -> Self {
        let max_body_bytes = max_body_bytes.min(u32::MAX as usize);
        let budget = bytes_in_flight
            .max(max_body_bytes)
            .min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(budget)),
            max_body_bytes,
            read_timeout,
        }
    }

    /// Bytes of the budget free right now.
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("The request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("The request body was not received within {0} s")]
    TooSlow(u64),
    #[error("The server is reading too many request bodies at once; retry shortly")]
    Busy,
    #[error("The request body could not be read: {0}")]
    Unreadable(String),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unreadable(_) => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({
            "errors": [{ "message": self.to_string(), "extensions": { "code": "BAD_REQUEST" } }]
        });
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(self, Self::Busy) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Middleware: reads the body within the limits, hands the handler the bytes, and holds
/// their room in the budget until the handler has answered.
pub async fn hold_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if axum::body::HttpBody::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match read(&limits, body, declared).await {
        Ok((bytes, room)) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            drop(room);
            response
        }
        Err(error) => {
            tracing::info!(error = %error, "request body refused");
            error.into_response()
        }
    }
}

async fn read(
    limits: &BodyLimits,
    body: Body,
    declared: Option<u64>,
) -> Result<(Bytes, Vec<OwnedSemaphorePermit>), BodyError> {
    let max = limits.max_body_bytes;
    if declared.is_some_and(|length| length > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let deadline = Instant::now() + limits.read_timeout;
    let slow = || BodyError::TooSlow(limits.read_timeout.as_secs());
    let mut room = Vec::new();
    let mut held = 0usize;
    if let Some(length) = declared.and_then(|length| u32::try_from(length).ok())
        && length > 0
    {
        let permit =
            tokio::time::timeout_at(deadline, limits.budget.clone().acquire_many_owned(length))
                .await
                .map_err(|_| BodyError::Busy)?
                .map_err(|_| BodyError::Busy)?;
        room.push(permit);
        held = length as usize;
    }
    let mut buffer = Vec::with_capacity(held);
    let mut body = body;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| slow())?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|error| BodyError::Unreadable(error.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = buffer.len() + data.len();
        if total > max {
            return Err(BodyError::TooLarge(max));
        }
        if total > held {
            let more = u32::try_from(total - held).map_err(|_| BodyError::TooLarge(max))?;
            let permit =
                tokio::time::timeout_at(deadline, limits.budget.clone().acquire_many_owned(more))
                    .await
                    .map_err(|_| slow())?
                    .map_err(|_| BodyError::Busy)?;
            room.push(permit);
            held = total;
        }
        buffer.extend_from_slice(&data);
    }
    Ok((Bytes::from(buffer), room))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: usize, max: usize) -> BodyLimits {
        BodyLimits::new(budget, max, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_body_holds_its_room_until_dropped() {
        let limits = limits(100, 100);
        let (bytes, room) = read(&limits, Body::from("x".repeat(60)), Some(60))
            .await
            .expect("read");
        assert_eq!(bytes.len(), 60);
        assert_eq!(limits.available(), 40);
        drop(room);
        assert_eq!(limits.available(), 100);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_declared_or_not() {
        let limits = limits(1000, 10);
        let declared = read(&limits, Body::from("x".repeat(11)), Some(11)).await;
        assert!(matches!(declared, Err(BodyError::TooLarge(10))));
        let chunked = read(&limits, Body::from("x".repeat(11)), None).await;
        assert!(matches!(chunked, Err(BodyError::TooLarge(10))));
        assert_eq!(limits.available(), 1000);
    }

    #[tokio::test]
    async fn a_body_waits_for_room_and_gives_up_busy_at_the_deadline() {
        let limits = BodyLimits::new(10, 10, Duration::from_millis(50));
        let (_, room) = read(&limits, Body::from("x".repeat(10)), Some(10))
            .await
            .expect("read");
        let second = read(&limits, Body::from("y".repeat(5)), Some(5)).await;
        assert!(matches!(second, Err(BodyError::Busy)));
        drop(room);
        assert!(
            read(&limits, Body::from("y".repeat(5)), Some(5))
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_budget_is_never_smaller_than_the_largest_body() {
        assert_eq!(limits(10, 100).available(), 100);
    }
}
