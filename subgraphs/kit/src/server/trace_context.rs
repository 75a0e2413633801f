//! W3C trace context (`traceparent`) at the edge: a request that arrives without a valid
//! one gets a fresh one, so the gateway forwards the same trace id to every subgraph it asks
//! and each process's log lines of that request carry it, with or without a trace exporter.
//!
//! With a trace exporter (the binary's `otel` feature), a [`Propagation`] is installed:
//! each request's span then joins the trace its `traceparent` names, and each subgraph
//! fetch hands on its own span's context. The libraries call [`adopt`] and [`inject`] and
//! need no tracing backend of their own.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
/// zero), as lower-case hex.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

/// A fresh `traceparent`: random trace and parent ids, sampled.
pub fn fresh() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let parent: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{parent:016x}-01")
}

/// Ties `tracing` spans to the W3C trace context, for the installed trace exporter.
pub trait Propagation: Send + Sync {
    /// Makes `span` a child of the trace context in `headers`.
    fn adopt(&self, span: &tracing::Span, headers: &HeaderMap);
    /// Writes `span`'s trace context into `headers`.
    fn inject(&self, span: &tracing::Span, headers: &mut HeaderMap);
}

static PROPAGATION: OnceLock<Box<dyn Propagation>> = OnceLock::new();

/// Installs the process's propagation, once; later calls are ignored.
pub fn install(propagation: Box<dyn Propagation>) {
    let _ = PROPAGATION.set(propagation);
}

/// Makes `span` a child of the trace context in `headers`, when a propagation is installed.
pub fn adopt(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(propagation) = PROPAGATION.get() {
        propagation.adopt(span, headers);
    }
}

/// Writes `span`'s trace context into `headers`, when a propagation is installed; without
/// one, `headers` keep the `traceparent` they carry.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    if let Some(propagation) = PROPAGATION.get() {
        propagation.inject(span, headers);
    }
}

/// Gives a request without a valid `traceparent` a fresh one.
pub async fn ensure_traceparent(mut request: Request, next: Next) -> Response {
    let valid = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(trace_id)
        .is_some();
    if !valid && let Ok(value) = HeaderValue::from_str(&fresh()) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn malformed_or_zero_traceparents_are_refused() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            None
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
    }

    #[test]
    fn a_fresh_traceparent_is_valid() {
        assert!(trace_id(&fresh()).is_some());
    }
}
