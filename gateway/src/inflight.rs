//! In-flight de-duplication: identical concurrent work shares one future. The first caller
//! runs it; callers arriving while it runs await the same result. Nothing is kept once it
//! finishes (that is the cache's job), and a first caller that goes away (client
//! disconnect) only unregisters the work, so later callers start afresh while those already
//! waiting still drive it to the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rand::RngCore;
use xxhash_rust::xxh3::Xxh3Builder;

/// A key: everything that makes two pieces of work identical, built by [`key`]. Keys are
/// compared whole, so different requests never share work however their hashes fall (a
/// SHA-256 of the parts cost ~10 % of the gateway's instructions per federated request).
pub type InFlightKey = Box<[u8]>;

/// The parts, each prefixed by its length so that no two different lists of parts make the
/// same key.
pub fn key(parts: &[&[u8]]) -> InFlightKey {
    let mut key = Vec::with_capacity(parts.iter().map(|part| part.len() + 8).sum());
    for part in parts {
        key.extend_from_slice(&(part.len() as u64).to_be_bytes());
        key.extend_from_slice(part);
    }
    key.into_boxed_slice()
}

/// `key` with one more part.
pub fn extend(key: InFlightKey, part: &[u8]) -> InFlightKey {
    let mut key = key.into_vec();
    key.extend_from_slice(&(part.len() as u64).to_be_bytes());
    key.extend_from_slice(part);
    key.into_boxed_slice()
}

type Running<V> = HashMap<InFlightKey, Shared<BoxFuture<'static, V>>, Xxh3Builder>;

/// One de-duplicator's counters.
#[derive(Debug, Default)]
pub struct DedupMetrics {
    /// Requests that ran.
    pub executed: AtomicU64,
    /// Requests that waited for an identical one already running instead.
    pub shared: AtomicU64,
}

/// Work in flight, by key.
pub struct InFlight<V: Clone> {
    running: Mutex<Running<V>>,
}

impl<V: Clone> std::fmt::Debug for InFlight<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl<V: Clone> Default for InFlight<V> {
    fn default() -> Self {
        // XXH3 with a secret of this process's own: keys come from clients.
        let mut secret = [0u8; 192]; // XXH3's secret size

        rand::thread_rng().fill_bytes(&mut secret);
        Self {
            running: Mutex::new(HashMap::with_hasher(Xxh3Builder::new().with_secret(secret))),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> InFlight<V> {
    /// Runs `work()` unless identical work is already running, then shares its result.
    pub async fn run(
        &self,
        key: InFlightKey,
        metrics: &DedupMetrics,
        work: impl FnOnce() -> BoxFuture<'static, V>,
    ) -> V {
        let (future, first) = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match running.get(&key) {
                Some(future) => (future.clone(), false),
                None => {
                    let future = work().shared();
                    running.insert(key.clone(), future.clone());
                    (future, true)
                }
            }
        };
        if !first {
            metrics.shared.fetch_add(1, Ordering::Relaxed);
            return future.await;
        }
        metrics.executed.fetch_add(1, Ordering::Relaxed);
        let _unregister = Unregister {
            running: &self.running,
            key,
            future: future.clone(),
        };
        future.await
    }
}

/// Removes the entry when the first caller finishes or goes away.
struct Unregister<'a, V: Clone> {
    running: &'a Mutex<Running<V>>,
    key: InFlightKey,
    future: Shared<BoxFuture<'static, V>>,
}

impl<V: Clone> Drop for Unregister<'_, V> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running
            .get(&self.key)
            .is_some_and(|future| future.ptr_eq(&self.future))
        {
            running.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn identical_concurrent_work_runs_once() {
        let inflight = Arc::new(InFlight::<usize>::default());
        let metrics = Arc::new(DedupMetrics::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks = (0..8).map(|_| {
            let (inflight, metrics, runs) = (inflight.clone(), metrics.clone(), runs.clone());
            tokio::spawn(async move {
                inflight
                    .run(key(&[b"same"]), &metrics, move || {
                        async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst) + 42
                        }
                        .boxed()
                    })
                    .await
            })
        });
        let results = futures::future::join_all(tasks).await;
        assert!(results.into_iter().all(|r| r.expect("task") == 42));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.shared.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn finished_work_is_not_kept() {
        let inflight = InFlight::<usize>::default();
        let metrics = DedupMetrics::default();
        let first = inflight
            .run(key(&[b"again"]), &metrics, || async { 1 }.boxed())
            .await;
        let second = inflight
            .run(key(&[b"again"]), &metrics, || async { 2 }.boxed())
            .await;
        assert_eq!((first, second), (1, 2));
    }
}
