//! The access log and the request metrics: one line per request (method, path, HTTP
//! version, status, duration, GraphQL operation name, client name, request id; inside the `request` span,
//! which adds the trace id) at `info` on the `gantry::access` target, `debug` for the probes and scrapes (`/health`, `/ready`,
//! `/metrics`), which come every few seconds and would drown the rest; and for every other
//! request `gantry_requests_total` and `gantry_request_duration_seconds` by operation name,
//! client name and status.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::labels::BoundedLabels;

/// The header a client names itself in (Apollo's convention, sent by its clients).
pub const CLIENT_NAME_HEADER: &str = "apollographql-client-name";

/// Paths probed or scraped every few seconds: logged at `debug`, not counted.
const QUIET_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Distinct client names with their own label; later ones are `other`.
const MAX_CLIENT_NAMES: usize = 20;
/// Distinct operation names with their own label; later ones are `other`.
const MAX_OPERATION_NAMES: usize = 200;

static CLIENT_NAMES: LazyLock<BoundedLabels> =
    LazyLock::new(|| BoundedLabels::new(MAX_CLIENT_NAMES));
static OPERATION_NAMES: LazyLock<BoundedLabels> =
    LazyLock::new(|| BoundedLabels::new(MAX_OPERATION_NAMES));

/// The GraphQL operation a response answered, put into the response's extensions by the
/// GraphQL handler for the access log and the metrics (empty: none named).
#[derive(Debug, Clone, Default)]
pub struct OperationName(pub String);

pub async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let version = request.version();
    let path = request.uri().path().to_owned();
    let headers = request.headers();
    let client = headers
        .get(CLIENT_NAME_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    let response = next.run(request).await;

    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let operation = response
        .extensions()
        .get::<OperationName>()
        .map(|name| name.0.as_str())
        .unwrap_or_default();
    if QUIET_PATHS.contains(&path.as_str()) {
        tracing::debug!(target: "gantry::access", %method, path, ?version, status, duration_ms, request_id, "request");
        return response;
    }
    let client = CLIENT_NAMES.label(&client);
    let operation = OPERATION_NAMES.label(operation);
    tracing::info!(
        target: "gantry::access",
        %method,
        path,
        ?version,
        status,
        duration_ms,
        operation,
        client,
        request_id,
        "request"
    );
    let labels = [
        ("operation", operation),
        ("client", client),
        ("status", status.to_string()),
    ];
    metrics::counter!("gantry_requests_total", &labels).increment(1);
    metrics::histogram!("gantry_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    response
}
