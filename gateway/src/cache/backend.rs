//! Where cached responses live: in this process (moka) without Redis, in Redis with it, so
//! every replica shares them and their invalidation tags. A Redis error is a miss.
//!
//! An entry computed from data read before an invalidation must not be stored after it:
//! a request that read a follower count just before an account deletion committed would
//! otherwise put the old count back for its whole TTL. So each invalidation also records
//! when each tag was invalidated (`<prefix>inv:<tag>` in Redis, for `max_ttl`), and a store
//! whose computation started before the latest invalidation of any of its tags is dropped.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;

use crate::shared::{SharedState, SharedStateError};

/// One cached response, as stored.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub value: String,
    expires_at: Instant,
}

/// The two backends behind one interface.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    Local(LocalBackend),
    Redis(RedisBackend),
}

/// In-process: entries and a tag → keys index, both bounded by size and `max_ttl`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    entries: Cache<String, StoredEntry>,
    tags: Cache<String, Arc<Mutex<HashSet<String>>>>,
    invalidated: Cache<String, SystemTime>,
}

impl LocalBackend {
    pub fn new(capacity: u64, max_ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(max_ttl)
                .build(),
            tags: Cache::builder()
                .max_capacity(capacity.saturating_mul(4))
                .time_to_live(max_ttl)
                .build(),
            invalidated: Cache::builder()
                .max_capacity(capacity.saturating_mul(4))
                .time_to_live(max_ttl)
                .build(),
        }
    }
}

/// Redis: `SET key value PX ttl`; tags are sets `<prefix>tag:<id>` of keys, kept for
/// `max_ttl` (longer than any entry they point at). Invalidation is `SMEMBERS` + `DEL`.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    pub shared: SharedState,
    pub max_ttl: Duration,
}

/// What one invalidation removed, by kind of entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub responses: u64,
    pub entities: u64,
}

impl Removed {
    fn count(&mut self, is_entity: bool) {
        if is_entity {
            self.entities += 1;
        } else {
            self.responses += 1;
        }
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Entity-cache keys start with this; response keys with `response:`.
pub const ENTITY_KEY_PREFIX: &str = "entity:";

impl CacheBackend {
    /// In Redis when `shared` is set, otherwise in this process.
    pub fn new(shared: Option<SharedState>, capacity: u64, max_ttl: Duration) -> Self {
        match shared {
            Some(shared) => Self::Redis(RedisBackend { shared, max_ttl }),
            None => Self::Local(LocalBackend::new(capacity, max_ttl)),
        }
    }

    /// Each of `keys`, or `None` where absent.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, SharedStateError> {
        match self {
            Self::Local(local) => Ok(keys
                .iter()
                .map(|key| {
                    local
                        .entries
                        .get(key)
                        .filter(|entry| entry.expires_at > Instant::now())
                        .map(|entry| entry.value)
                })
                .collect()),
            Self::Redis(redis) => {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let mut command = redis::cmd("MGET");
                for key in keys {
                    command.arg(redis.shared.key(key));
                }
                redis.shared.query(&command).await
            }
        }
    }

    /// The first of `keys` that is present.
    pub async fn get_first(&self, keys: &[String]) -> Result<Option<String>, SharedStateError> {
        match self {
            Self::Local(local) => Ok(keys.iter().find_map(|key| {
                local
                    .entries
                    .get(key)
                    .filter(|entry| entry.expires_at > Instant::now())
                    .map(|entry| entry.value)
            })),
            Self::Redis(redis) => {
                let mut command = redis::cmd("MGET");
                for key in keys {
                    command.arg(redis.shared.key(key));
                }
                let values: Vec<Option<String>> = redis.shared.query(&command).await?;
                Ok(values.into_iter().flatten().next())
            }
        }
    }

    /// Stores `value` under `key`, tagged, unless one of `tags` was invalidated at or after
    /// `computed_since` (when the request that computed it started); `Ok(false)` then.
    pub async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
        tags: &BTreeSet<String>,
        computed_since: SystemTime,
    ) -> Result<bool, SharedStateError> {
        match self {
            Self::Local(local) => {
                if tags.iter().any(|tag| {
                    local
                        .invalidated
                        .get(tag)
                        .is_some_and(|at| at >= computed_since)
                }) {
                    return Ok(false);
                }
                let expires_at = Instant::now() + ttl;
                local
                    .entries
                    .insert(key.to_owned(), StoredEntry { value, expires_at });
                for tag in tags {
                    let keys = local.tags.get_with(tag.clone(), Default::default);
                    keys.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key.to_owned());
                }
                // An invalidation between the check above and the tag sets could not see
                // this key yet: look again now that it is in them.
                if tags.iter().any(|tag| {
                    local
                        .invalidated
                        .get(tag)
                        .is_some_and(|at| at >= computed_since)
                }) {
                    local.entries.invalidate(key);
                    return Ok(false);
                }
                Ok(true)
            }
            Self::Redis(redis) => {
                let since = millis(computed_since);
                if !tags.is_empty() {
                    let mut command = redis::cmd("MGET");
                    for tag in tags {
                        command.arg(redis.shared.key(&format!("inv:{tag}")));
                    }
                    let stamps: Vec<Option<u64>> = redis.shared.query(&command).await?;
                    if stamps.into_iter().flatten().any(|at| at >= since) {
                        return Ok(false);
                    }
                }
                let stamp_keys: Vec<String> = tags
                    .iter()
                    .map(|tag| redis.shared.key(&format!("inv:{tag}")))
                    .collect();
                let key = redis.shared.key(key);
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let tag_ttl_ms = u64::try_from(redis.max_ttl.as_millis()).unwrap_or(u64::MAX);
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                for tag in tags {
                    let tag_key = redis.shared.key(&format!("tag:{tag}"));
                    pipe.cmd("SADD").arg(&tag_key).arg(&key).ignore();
                    pipe.cmd("PEXPIRE").arg(&tag_key).arg(tag_ttl_ms).ignore();
                }
                if stamp_keys.is_empty() {
                    redis.shared.query::<redis::Value>(&pipe).await?;
                    return Ok(true);
                }
                // An invalidation that wrote its stamp after the check above but read the
                // tag sets before this SADD missed the key: its stamp is visible now.
                pipe.cmd("MGET").arg(&stamp_keys);
                let (stamps,): (Vec<Option<u64>>,) = redis.shared.query(&pipe).await?;
                if stamps.into_iter().flatten().any(|at| at >= since) {
                    redis
                        .shared
                        .query::<redis::Value>(redis::cmd("DEL").arg(&key))
                        .await?;
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }

    /// Removes every entry tagged with any of `tags`; returns how many were removed.
    pub async fn invalidate(&self, tags: &BTreeSet<String>) -> Result<Removed, SharedStateError> {
        let mut removed = Removed::default();
        match self {
            Self::Local(local) => {
                let now = SystemTime::now();
                for tag in tags {
                    local.invalidated.insert(tag.clone(), now);
                    if let Some(keys) = local.tags.remove(tag) {
                        let keys = std::mem::take(
                            &mut *keys.lock().unwrap_or_else(PoisonError::into_inner),
                        );
                        for key in keys {
                            if local.entries.remove(&key).is_some() {
                                removed.count(key.starts_with(ENTITY_KEY_PREFIX));
                            }
                        }
                    }
                }
                Ok(removed)
            }
            Self::Redis(redis) => {
                if tags.is_empty() {
                    return Ok(removed);
                }
                let tag_keys: Vec<String> = tags
                    .iter()
                    .map(|tag| redis.shared.key(&format!("tag:{tag}")))
                    .collect();
                let mut members = redis::pipe();
                for tag_key in &tag_keys {
                    members.cmd("SMEMBERS").arg(tag_key);
                }
                let members: Vec<Vec<String>> = redis.shared.query(&members).await?;
                let keys: BTreeSet<String> = members.into_iter().flatten().collect();
                let mut delete = redis::pipe();
                for key in keys.iter().chain(&tag_keys) {
                    delete.cmd("DEL").arg(key);
                }
                let now = millis(SystemTime::now());
                let stamp_ttl = u64::try_from(redis.max_ttl.as_millis()).unwrap_or(u64::MAX);
                for tag in tags {
                    delete
                        .cmd("SET")
                        .arg(redis.shared.key(&format!("inv:{tag}")))
                        .arg(now)
                        .arg("PX")
                        .arg(stamp_ttl.max(1))
                        .ignore();
                }
                let deleted: Vec<u64> = redis.shared.query(&delete).await?;
                let entity_prefix = redis.shared.key(ENTITY_KEY_PREFIX);
                for (key, deleted) in keys.iter().zip(deleted) {
                    if deleted > 0 {
                        removed.count(key.starts_with(&entity_prefix));
                    }
                }
                Ok(removed)
            }
        }
    }
}
