//! What one run measured: an HDR histogram of latencies (microseconds, 3 significant
//! digits), outcomes by kind, `x-cache` answers, and the summary written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency the histogram tells apart; longer ones count as this.
const HIGHEST_US: u64 = 120_000_000;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `kind` is e.g. `timeout`, `connect`, `http_503`, `graphql:RATE_LIMITED`.
    Error {
        kind: String,
        detail: String,
    },
}

/// The `x-cache` header of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAnswer {
    Hit,
    Miss,
    Absent,
}

/// Latencies of one group of requests.
#[derive(Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
    pub errors: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .expect("static bounds: 1 µs to 120 s at 3 significant digits are valid"),
            errors: 0,
        }
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.clamp(1, HIGHEST_US));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Everything recorded during the measured window.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every measured request, whatever its outcome (latency to the end of its response).
    pub all: Latencies,
    pub by_operation: BTreeMap<&'static str, Latencies>,
    pub errors: BTreeMap<String, u64>,
    /// One example message per error kind.
    pub error_samples: BTreeMap<String, String>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Responses (any outcome) that completed inside the measured window.
    pub completed_in_window: u64,
    pub ok_in_window: u64,
}

impl Recorder {
    pub fn record(
        &mut self,
        operation: &'static str,
        latency: Duration,
        outcome: &Outcome,
        cache: CacheAnswer,
    ) {
        self.all.record(latency);
        let op = self.by_operation.entry(operation).or_default();
        op.record(latency);
        match cache {
            CacheAnswer::Hit => self.cache_hits += 1,
            CacheAnswer::Miss => self.cache_misses += 1,
            CacheAnswer::Absent => {}
        }
        if let Outcome::Error { kind, detail } = outcome {
            op.errors += 1;
            self.error(kind, detail);
        }
    }

    /// A request that was never sent (too many outstanding).
    pub fn not_started(&mut self) {
        self.error("not_started", "the outstanding-request cap was reached");
    }

    fn error(&mut self, kind: &str, detail: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        self.all.errors += 1;
        if !self.error_samples.contains_key(kind) {
            let detail: String = detail.chars().take(300).collect();
            self.error_samples.insert(kind.to_owned(), detail);
        }
    }
}

/// The JSON one `gantry-bench load` writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    /// `open` (fixed arrival rate) or `closed` (N connections back to back).
    pub mode: String,
    pub target_rps: Option<f64>,
    pub connections: Option<usize>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Responses of any outcome completed per second during the measured window.
    pub achieved_rps: f64,
    /// Successful responses per second during the measured window.
    pub ok_rps: f64,
    /// Requests intended (open loop) or sent (closed loop) during the measured window.
    pub count: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_samples: BTreeMap<String, String>,
    pub latency: LatencySummary,
    pub by_operation: BTreeMap<String, OperationReport>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Labels given on the command line (shape, gateway, dedup …), for the report.
    pub labels: BTreeMap<String, String>,
    /// Per process: memory and CPU during the measured window.
    pub processes: BTreeMap<String, crate::watch::ProcessUsage>,
    /// Per `/metrics` endpoint: how much each counter grew during the measured window.
    pub metrics_delta: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OperationReport {
    pub count: u64,
    pub errors: u64,
    pub latency: LatencySummary,
}

impl RunReport {
    /// Fills the measured numbers in from the recorder.
    pub fn fill(&mut self, recorder: &Recorder, window: Duration) {
        let secs = window.as_secs_f64().max(1e-9);
        self.achieved_rps = recorder.completed_in_window as f64 / secs;
        self.ok_rps = recorder.ok_in_window as f64 / secs;
        self.count =
            recorder.all.count() + recorder.errors.get("not_started").copied().unwrap_or(0);
        self.errors_total = recorder.all.errors;
        self.errors = recorder.errors.clone();
        self.error_samples = recorder.error_samples.clone();
        self.latency = recorder.all.summary();
        self.by_operation = recorder
            .by_operation
            .iter()
            .map(|(name, l)| {
                let report = OperationReport {
                    count: l.count(),
                    errors: l.errors,
                    latency: l.summary(),
                };
                ((*name).to_owned(), report)
            })
            .collect();
        self.cache_hits = recorder.cache_hits;
        self.cache_misses = recorder.cache_misses;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds_with_three_significant_digits() {
        let mut latencies = Latencies::default();
        for ms in 1..=100u64 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn errors_are_counted_by_kind_with_one_sample_each() {
        let mut recorder = Recorder::default();
        let error = |kind: &str, detail: &str| Outcome::Error {
            kind: kind.into(),
            detail: detail.into(),
        };
        let ms = Duration::from_millis(1);
        recorder.record("Q", ms, &error("http_503", "first"), CacheAnswer::Absent);
        recorder.record("Q", ms, &error("http_503", "second"), CacheAnswer::Absent);
        recorder.record("Q", ms, &Outcome::Ok, CacheAnswer::Hit);
        recorder.not_started();
        assert_eq!(recorder.errors["http_503"], 2);
        assert_eq!(recorder.error_samples["http_503"], "first");
        assert_eq!(recorder.errors["not_started"], 1);
        assert_eq!(recorder.all.errors, 3);
        assert_eq!(recorder.all.count(), 3);
        assert_eq!(recorder.cache_hits, 1);
    }
}
