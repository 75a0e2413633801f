//! Where automatic persisted queries (APQ) live between a client's registration and its
//! later hash-only requests: in this process (a bounded LRU) or in Redis, shared by every
//! replica and surviving restarts. Neither ever fails a request: a lost or unreachable
//! entry is a miss, and the client answers a miss by sending the text again.

use std::time::Duration;

use async_trait::async_trait;

use crate::shared::SharedState;

/// A store of query texts by their SHA-256 (lowercase hex).
#[async_trait]
pub trait ApqStore: Send + Sync + std::fmt::Debug {
    /// The text registered under `hash`; `None` when unknown or unreachable.
    async fn get(&self, hash: &str) -> Option<String>;
    /// Registers `query` under `hash` (already verified); failures are logged, not raised.
    async fn put(&self, hash: &str, query: &str);
}

/// Bounded in-process store (least recently used entries go first), for one replica.
#[derive(Debug)]
pub struct LocalApqStore {
    queries: moka::sync::Cache<String, String>,
}

impl LocalApqStore {
    /// `max_bytes` bounds the total size of stored texts.
    pub fn new(max_bytes: u64) -> Self {
        let queries = moka::sync::Cache::builder()
            .weigher(|hash: &String, query: &String| {
                u32::try_from(hash.len() + query.len()).unwrap_or(u32::MAX)
            })
            .max_capacity(max_bytes)
            .build();
        Self { queries }
    }
}

#[async_trait]
impl ApqStore for LocalApqStore {
    async fn get(&self, hash: &str) -> Option<String> {
        self.queries.get(hash)
    }

    async fn put(&self, hash: &str, query: &str) {
        self.queries.insert(hash.to_owned(), query.to_owned());
    }
}

/// Redis store under `<prefix>apq:<hash>`; every read from Redis refreshes the TTL, so
/// queries in use never expire and abandoned ones do. A text never changes under its hash,
/// so each replica also keeps the texts it has seen in a small in-process LRU and asks Redis
/// only for the others: a hot persisted query costs no Redis round trip.
#[derive(Debug)]
pub struct RedisApqStore {
    shared: SharedState,
    ttl: Duration,
    recent: LocalApqStore,
}

/// Bytes of query text each replica keeps in front of Redis.
const RECENT_BYTES: u64 = 8 * 1024 * 1024;

impl RedisApqStore {
    pub fn new(shared: SharedState, ttl: Duration) -> Self {
        Self {
            shared,
            ttl,
            recent: LocalApqStore::new(RECENT_BYTES),
        }
    }

    fn key(&self, hash: &str) -> String {
        self.shared.key(&format!("apq:{hash}"))
    }
}

#[async_trait]
impl ApqStore for RedisApqStore {
    async fn get(&self, hash: &str) -> Option<String> {
        if let Some(query) = self.recent.queries.get(hash) {
            return Some(query);
        }
        let mut command = redis::cmd("GETEX");
        command
            .arg(self.key(hash))
            .arg("EX")
            .arg(self.ttl.as_secs().max(1));
        match self.shared.query::<Option<String>>(&command).await {
            Ok(Some(query)) => {
                self.recent.queries.insert(hash.to_owned(), query.clone());
                Some(query)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "APQ lookup in Redis failed; answering not found");
                None
            }
        }
    }

    async fn put(&self, hash: &str, query: &str) {
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(hash))
            .arg(query)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1));
        match self.shared.query::<()>(&command).await {
            Ok(()) => self
                .recent
                .queries
                .insert(hash.to_owned(), query.to_owned()),
            Err(error) => {
                tracing::warn!(%error, "APQ registration in Redis failed; the client will resend")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_store_returns_what_was_registered() {
        let store = LocalApqStore::new(1024);
        assert_eq!(store.get("abc").await, None);
        store.put("abc", "{ hello }").await;
        assert_eq!(store.get("abc").await.as_deref(), Some("{ hello }"));
    }

    #[tokio::test]
    async fn the_local_store_is_bounded_by_size() {
        let store = LocalApqStore::new(100);
        for i in 0..50 {
            store.put(&format!("hash{i}"), &"x".repeat(40)).await;
        }
        store.queries.run_pending_tasks();
        assert!(store.queries.weighted_size() <= 100);
    }
}
