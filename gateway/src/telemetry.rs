//! What the gateway tells operators beyond its answers: the metrics it records into the
//! process's `metrics` recorder (see `gantry_kit::prometheus`), and the headers that tie a
//! subgraph's log lines and spans to the client request that caused them.
//!
//! Metrics recorded at their source: per-subgraph fetches (in
//! [`transport::MeasuredTransport`](crate::transport::MeasuredTransport)), plan-cache and
//! prepared-operation lookups ([`lookup`]). Counters the caches and persisted queries keep
//! themselves are copied in before each scrape (`service::metrics_router`).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use gantry_kit::server::trace_context::TRACEPARENT;

/// The request id header, as forwarded to subgraphs.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The in-process caches whose lookups are counted by [`lookup`].
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Query plans, per normalized operation (`cache="plan"`).
    Plan,
    /// Prepared operations (parsed, within the limits, validated, planned), per text and
    /// operation name (`cache="validation"`).
    Validation,
}

/// Lookups of one in-process cache since start, for its hit ratio.
struct Lookups {
    hits: AtomicU64,
    misses: AtomicU64,
}

static PLAN_LOOKUPS: Lookups = Lookups {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
};
static VALIDATION_LOOKUPS: Lookups = Lookups {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
};

impl Lookup {
    fn label(self) -> &'static str {
        match self {
            Lookup::Plan => "plan",
            Lookup::Validation => "validation",
        }
    }

    fn lookups(self) -> &'static Lookups {
        match self {
            Lookup::Plan => &PLAN_LOOKUPS,
            Lookup::Validation => &VALIDATION_LOOKUPS,
        }
    }
}

/// Counts a lookup in one of the in-process caches: `gantry_cache_hits_total` or
/// `gantry_cache_misses_total`, labelled like the response and entity caches.
pub fn lookup(cache: Lookup, hit: bool) {
    let lookups = cache.lookups();
    if hit {
        lookups.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gantry_cache_hits_total", "cache" => cache.label()).increment(1);
    } else {
        lookups.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gantry_cache_misses_total", "cache" => cache.label()).increment(1);
    }
}

/// The headers every subgraph request of a client request carries, so the subgraph's log
/// lines join the gateway's: the request id, and the client's trace context (the edge gave
/// the request one if it came without).
pub fn correlation_headers(client_headers: &HeaderMap, request_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    for name in [TRACEPARENT, "tracestate"] {
        if let Some(value) = client_headers.get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    headers
}

/// Sets the plan and prepared-operation caches' hit ratios, for a scrape.
pub fn publish_lookup_ratios() {
    for cache in [Lookup::Plan, Lookup::Validation] {
        let lookups = cache.lookups();
        let hits = lookups.hits.load(Ordering::Relaxed) as f64;
        let all = hits + lookups.misses.load(Ordering::Relaxed) as f64;
        let ratio = if all == 0.0 { 0.0 } else { hits / all };
        metrics::gauge!("gantry_cache_hit_ratio", "cache" => cache.label()).set(ratio);
    }
}

/// Help texts of the metrics the gateway records.
pub fn describe() {
    metrics::describe_counter!("gantry_cache_hits_total", "Lookups the cache answered.");
    metrics::describe_counter!(
        "gantry_cache_misses_total",
        "Cacheable lookups that found nothing."
    );
    metrics::describe_counter!("gantry_cache_stores_total", "Entries stored.");
    metrics::describe_counter!(
        "gantry_cache_invalidations_total",
        "Cached entries removed because a change touched them."
    );
    metrics::describe_counter!(
        "gantry_cache_errors_total",
        "Cache backend calls that failed."
    );
    metrics::describe_gauge!(
        "gantry_cache_hit_ratio",
        "Hits over lookups since start (0 before any)."
    );
    metrics::describe_counter!("gantry_dedup_executed_total", "Requests that ran.");
    metrics::describe_counter!(
        "gantry_dedup_shared_total",
        "Requests answered by an identical one already in flight."
    );
    metrics::describe_gauge!("gantry_redis_up", "Whether the last Redis call succeeded.");
    for (name, help) in [
        ("apq_hits", "Requests whose APQ hash was found."),
        (
            "apq_misses",
            "Requests whose APQ hash was not found (PERSISTED_QUERY_NOT_FOUND).",
        ),
        ("apq_registrations", "APQ texts registered."),
        (
            "apq_refused_registrations",
            "APQ texts not registered: invalid, too large or over the client's rate.",
        ),
        (
            "manifest_hits",
            "Requests answered from the persisted-operation manifest.",
        ),
        (
            "hash_mismatches",
            "Requests whose text did not match their APQ hash.",
        ),
        ("rejections", "Requests refused by the safelist."),
    ] {
        metrics::describe_counter!(format!("gantry_persisted_{name}_total"), help);
    }
    metrics::describe_histogram!(
        "gantry_subgraph_request_duration_seconds",
        "Time of one request to a subgraph, by subgraph and outcome."
    );
    metrics::describe_counter!(
        "gantry_subgraph_errors_total",
        "Subgraph requests that failed (timeout, connection, HTTP status, bad response), by subgraph and kind."
    );
    metrics::describe_gauge!(
        "gantry_subgraph_requests_in_flight",
        "Requests to a subgraph sent and not yet answered."
    );
}
