//! The process's metrics: one `metrics` recorder (the Prometheus exporter's), installed once,
//! that every crate of the process records into with the `metrics` macros, and `/metrics`,
//! which renders it in the Prometheus text format.
//!
//! Counters that a component keeps itself (its own figures, per instance, read by its
//! tests too) are copied into the recorder by a [`Collect`] hook right before each render,
//! so a scrape always sees their current values.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds, in seconds, of every latency histogram's buckets: from a cached answer
/// (under a millisecond) to a request at the default 30 s deadline.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The gateway's histogram of estimated operation costs (`@cost`/`@listSize`).
pub const COST_METRIC: &str = "gantry_operation_cost";

/// Upper bounds of [`COST_METRIC`]'s buckets: from one object to far past any default limit.
pub const COST_BUCKETS: &[f64] = &[
    1.0,
    5.0,
    10.0,
    50.0,
    100.0,
    500.0,
    1_000.0,
    5_000.0,
    10_000.0,
    50_000.0,
    100_000.0,
    1_000_000.0,
];

/// How often histograms are compacted when nobody scrapes, so their samples do not pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The `/metrics` media type: the Prometheus text format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Call it before recording anything (every
/// server command does, building its `/metrics`): metrics recorded before are lost.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(COST_METRIC.into()), COST_BUCKETS)
            .and_then(|builder| builder.set_buckets(LATENCY_BUCKETS));
        let builder = match builder {
            Ok(builder) => builder,
            Err(err) => {
                tracing::warn!(error = %err, "latency buckets refused; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(err) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %err, "another metrics recorder is installed; /metrics shows only this one's");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "no metrics upkeep thread; histograms are compacted at each scrape only");
        }
        describe();
        handle
    })
}

/// Help texts of the metrics this crate records.
fn describe() {
    metrics::describe_counter!(
        "gantry_sql_statements_total",
        "SQL statements sent to the database by this process."
    );
    metrics::describe_counter!(
        "gantry_requests_total",
        "HTTP requests answered, by GraphQL operation name, client name and HTTP status."
    );
    metrics::describe_histogram!(
        "gantry_request_duration_seconds",
        "Time to answer an HTTP request, by GraphQL operation name, client name and HTTP status."
    );
    metrics::describe_histogram!(
        COST_METRIC,
        "Estimated cost of each operation (@cost/@listSize), before any subgraph is asked."
    );
    metrics::describe_gauge!(
        "gantry_database_up",
        "Whether the database answered and took writes at the last /ready probe."
    );
}

/// Copies figures a component keeps itself into the recorder, right before a render.
pub type Collect = Arc<dyn Fn() + Send + Sync>;

/// The current metrics in the Prometheus text format, after `collect`.
pub fn render(collect: Option<&Collect>) -> String {
    let handle = handle();
    #[cfg(feature = "db")]
    metrics::counter!("gantry_sql_statements_total").absolute(crate::db::statements_executed());
    if let Some(collect) = collect {
        collect();
    }
    handle.render()
}

/// `GET /metrics`, rendering this process's recorder after `collect`. Installs the recorder
/// (see [`handle`]).
pub fn router(collect: Option<Collect>) -> Router {
    handle();
    Router::new().route(
        "/metrics",
        get(move || {
            let text = render(collect.as_ref());
            async move { ([(CONTENT_TYPE, TEXT_FORMAT)], text) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_render_in_the_prometheus_text_format() {
        handle();
        metrics::counter!("gantry_test_events_total", "kind" => "a").increment(2);
        metrics::histogram!("gantry_test_duration_seconds").record(0.003);
        let text = render(None);
        assert!(
            text.contains("gantry_test_events_total{kind=\"a\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gantry_test_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gantry_sql_statements_total counter"),
            "{text}"
        );
    }

    #[test]
    fn operation_costs_are_counted_in_cost_sized_buckets() {
        handle();
        for cost in [3.0, 700.0, 1e12] {
            metrics::histogram!(COST_METRIC).record(cost);
        }
        let text = render(None);
        for line in [
            "gantry_operation_cost_bucket{le=\"5\"} 1\n",
            "gantry_operation_cost_bucket{le=\"1000\"} 2\n",
            "gantry_operation_cost_bucket{le=\"+Inf\"} 3\n",
            "gantry_operation_cost_count 3\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
