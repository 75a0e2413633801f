//! Per-subgraph fetch metrics, and a span per fetch (whose trace context the request
//! carries to the subgraph): the wrapper closest to the wire, so
//! entity-cache hits and de-duplicated fetches (answered without a request) are not counted.
//!
//! - `gantry_subgraph_request_duration_seconds{subgraph, outcome}`: `outcome` is `ok`,
//!   `graphql_errors` (the subgraph answered with errors) or `error` (no GraphQL answer).
//! - `gantry_subgraph_errors_total{subgraph, kind}`: `kind` names the [`TransportError`].
//! - `gantry_subgraph_requests_in_flight{subgraph}`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use gantry_kit::server::trace_context;
use tracing::Instrument;

use super::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};

/// Wraps a transport to measure its fetches.
pub struct MeasuredTransport {
    inner: Arc<dyn SubgraphTransport>,
}

impl std::fmt::Debug for MeasuredTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasuredTransport").finish_non_exhaustive()
    }
}

impl MeasuredTransport {
    pub fn new(inner: Arc<dyn SubgraphTransport>) -> Self {
        Self { inner }
    }
}

/// The `kind` label of a failed fetch.
fn error_kind(error: &TransportError) -> &'static str {
    match error {
        TransportError::UnknownSubgraph(_) => "unknown_subgraph",
        TransportError::Timeout => "timeout",
        TransportError::Connect(_) => "connect",
        TransportError::Status { .. } => "status",
        TransportError::InvalidResponse(_) => "invalid_response",
        TransportError::ResponseTooLarge { .. } => "response_too_large",
        TransportError::Other(_) => "other",
    }
}

/// Decrements the in-flight gauge however the fetch ends, cancelled included.
struct InFlight(metrics::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[async_trait]
impl SubgraphTransport for MeasuredTransport {
    async fn execute(
        &self,
        mut request: SubgraphRequest,
    ) -> Result<SubgraphResponse, TransportError> {
        let subgraph = request.subgraph_name.clone();
        let span = tracing::info_span!(
            "subgraph_fetch",
            subgraph = %subgraph,
            operation_name = request.operation_name.as_deref(),
        );
        // The subgraph's spans become children of this fetch's.
        trace_context::inject(&span, &mut request.headers);
        let in_flight =
            metrics::gauge!("gantry_subgraph_requests_in_flight", "subgraph" => subgraph.clone());
        in_flight.increment(1.0);
        let _in_flight = InFlight(in_flight);
        let started = Instant::now();
        let result = self.inner.execute(request).instrument(span).await;
        let outcome = match &result {
            Ok(response) if response.errors.is_empty() => "ok",
            Ok(_) => "graphql_errors",
            Err(error) => {
                metrics::counter!(
                    "gantry_subgraph_errors_total",
                    "subgraph" => subgraph.clone(),
                    "kind" => error_kind(error),
                )
                .increment(1);
                "error"
            }
        };
        metrics::histogram!(
            "gantry_subgraph_request_duration_seconds",
            "subgraph" => subgraph,
            "outcome" => outcome,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }
}
