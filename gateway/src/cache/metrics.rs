//! Counters for the caches and de-duplication, kept per gateway (their tests read them) and
//! copied into the process's `metrics` recorder for `/metrics` by [`GatewayMetrics::publish`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::inflight::DedupMetrics;

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
    /// Copies every counter into the process's `metrics` recorder (`gantry_cache_*_total`
    /// and `gantry_cache_hit_ratio` by `cache`, `gantry_dedup_*_total` by `kind`), for a
    /// scrape.
    pub fn publish(&self) {
        for (label, cache) in [
            ("response", &self.response_cache),
            ("entity", self.entity_cache.as_ref()),
        ] {
            for (name, value) in [
                ("gantry_cache_hits_total", &cache.hits),
                ("gantry_cache_misses_total", &cache.misses),
                ("gantry_cache_stores_total", &cache.stores),
                ("gantry_cache_invalidations_total", &cache.invalidations),
                ("gantry_cache_errors_total", &cache.errors),
            ] {
                ::metrics::counter!(name, "cache" => label).absolute(value.load(Ordering::Relaxed));
            }
            ::metrics::gauge!("gantry_cache_hit_ratio", "cache" => label).set(cache.hit_ratio());
        }
        for (kind, dedup) in [
            ("subgraph", self.subgraph_dedup.as_ref()),
            ("operation", &self.operation_dedup),
        ] {
            ::metrics::counter!("gantry_dedup_executed_total", "kind" => kind)
                .absolute(dedup.executed.load(Ordering::Relaxed));
            ::metrics::counter!("gantry_dedup_shared_total", "kind" => kind)
                .absolute(dedup.shared.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hit_ratio_is_hits_over_lookups() {
        let metrics = GatewayMetrics::default();
        assert_eq!(metrics.response_cache.hit_ratio(), 0.0);
        inc(&metrics.response_cache.hits);
        inc(&metrics.response_cache.misses);
        inc(&metrics.response_cache.hits);
        inc(&metrics.response_cache.hits);
        assert_eq!(metrics.response_cache.hit_ratio(), 0.75);
    }
}
