//! Counters for the caches and de-duplication, rendered in the Prometheus text format at
//! `/metrics`. Plain atomics: nothing here is worth a dependency.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::shared::SharedState;

/// One cache's counters.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stores: AtomicU64,
    pub invalidations: AtomicU64,
    /// Backend calls that failed (Redis down or slow); each also counted as a miss.
    pub errors: AtomicU64,
}

impl CacheMetrics {
    /// Hits over hits and misses; 0 before any lookup.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.hits.load(Ordering::Relaxed) as f64;
        let misses = self.misses.load(Ordering::Relaxed) as f64;
        if hits + misses == 0.0 {
            0.0
        } else {
            hits / (hits + misses)
        }
    }
}

/// One de-duplicator's counters.
#[derive(Debug, Default)]
pub struct DedupMetrics {
    /// Requests that ran.
    pub executed: AtomicU64,
    /// Requests that waited for an identical one already running instead.
    pub shared: AtomicU64,
}

/// Every counter of one gateway process.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    pub response_cache: CacheMetrics,
    /// Per-entity results of `_entities` fetches.
    pub entity_cache: Arc<CacheMetrics>,
    pub subgraph_dedup: Arc<DedupMetrics>,
    pub operation_dedup: DedupMetrics,
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl GatewayMetrics {
    /// The Prometheus text exposition of every counter, plus Redis health when configured.
    pub fn render(&self, redis: Option<&SharedState>) -> String {
        let mut out = String::new();
        for (label, cache) in [
            ("response", &self.response_cache),
            ("entity", self.entity_cache.as_ref()),
        ] {
            for (name, help, value) in [
                ("hits", "Lookups the cache answered.", &cache.hits),
                (
                    "misses",
                    "Cacheable lookups that found nothing.",
                    &cache.misses,
                ),
                ("stores", "Entries stored.", &cache.stores),
                (
                    "invalidations",
                    "Cached entries removed because a change touched them.",
                    &cache.invalidations,
                ),
                ("errors", "Cache backend calls that failed.", &cache.errors),
            ] {
                counter(
                    &mut out,
                    &format!("gantry_cache_{name}_total"),
                    help,
                    &[("cache", label)],
                    value.load(Ordering::Relaxed),
                );
            }
        }
        for (label, cache) in [
            ("response", &self.response_cache),
            ("entity", self.entity_cache.as_ref()),
        ] {
            if !out.contains("# TYPE gantry_cache_hit_ratio gauge") {
                out.push_str(
                    "# HELP gantry_cache_hit_ratio Hits over lookups since start (0 before any).\n# TYPE gantry_cache_hit_ratio gauge\n",
                );
            }
            let _ = writeln!(
                out,
                "gantry_cache_hit_ratio{{cache=\"{label}\"}} {:.4}",
                cache.hit_ratio()
            );
        }
        for (kind, dedup) in [
            ("subgraph", self.subgraph_dedup.as_ref()),
            ("operation", &self.operation_dedup),
        ] {
            counter(
                &mut out,
                "gantry_dedup_executed_total",
                "Requests that ran.",
                &[("kind", kind)],
                dedup.executed.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "gantry_dedup_shared_total",
                "Requests answered by an identical one already in flight.",
                &[("kind", kind)],
                dedup.shared.load(Ordering::Relaxed),
            );
        }
        if let Some(redis) = redis {
            let _ = writeln!(
                out,
                "# HELP gantry_redis_up Whether the last Redis call succeeded.\n# TYPE gantry_redis_up gauge\ngantry_redis_up {}",
                u8::from(redis.is_healthy())
            );
        }
        out
    }
}

/// Appends one counter sample; `# HELP`/`# TYPE` are repeated per sample, which
/// Prometheus accepts only once per family, so they are written on the first sample only.
fn counter(out: &mut String, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
    if !out.contains(&format!("# TYPE {name} counter")) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    }
    let labels = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_text_format() {
        let metrics = GatewayMetrics::default();
        inc(&metrics.response_cache.hits);
        inc(&metrics.subgraph_dedup.shared);
        let text = metrics.render(None);
        assert!(text.contains("gantry_cache_hits_total{cache=\"response\"} 1"));
        assert!(text.contains("gantry_dedup_shared_total{kind=\"subgraph\"} 1"));
        assert_eq!(text.matches("# TYPE gantry_dedup_shared_total").count(), 1);
        assert!(text.contains("gantry_cache_hit_ratio{cache=\"response\"} 1.0000"));
        assert!(text.contains("gantry_cache_hits_total{cache=\"entity\"} 0"));
        assert!(!text.contains("gantry_redis_up"));
    }
}
