//! Where cached responses live: in this process (moka) without Redis, in Redis with it, so
//! every replica shares them and their invalidation tags. A Redis error is a miss.
//!
//! An entry computed from data read before an invalidation must not be stored after it:
//! a request that read a follower count just before an account deletion committed would
//! otherwise put the old count back for its whole TTL. Invalidations are numbered by one
//! counter (an atomic in this process, `<prefix>invalidation-seq` in Redis, shared by every
//! replica and the posts subgraph), and each records its number on the tags it touched
//! (`<prefix>inv:<tag>` in Redis, kept `max_ttl`). A lookup also reads the counter: its
//! [`ReadMark`]. A store is dropped when any of its tags carries a number above the mark of
//! the read that computed it, i.e. an invalidation that came after the read began. Numbers
//! from one counter order invalidations exactly: no wall clocks to keep in sync, and no two
//! events in "the same millisecond".

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// How many invalidations had happened when a read began (see the module docs). A store
/// made from that read is dropped if one of its tags was invalidated later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadMark(u64);

impl ReadMark {
    /// Bytes that tell reads with different marks apart (in-flight de-duplication keys).
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Whether an invalidation numbered `stamp` came after the read this mark belongs to.
    fn is_before(self, stamp: u64) -> bool {
        stamp > self.0
    }
}

/// Entries on their way into the backend (written after the answer went out), by key, each
/// with the [`ReadMark`] of the lookup that missed before computing it. A lookup that misses
/// with the same mark — no invalidation at all since — is answered with the pending entry,
/// as the backend will answer once the write lands. With another mark only the backend can
/// tell whether an invalidation since touched the entry: the lookup may wait for the write
/// to land ([`Pending::Landing`]) and look again.
#[derive(Debug)]
pub struct PendingWrites<T>(Mutex<std::collections::HashMap<String, PendingEntry<T>>>);

#[derive(Debug)]
struct PendingEntry<T> {
    since: ReadMark,
    value: T,
    landed: tokio::sync::watch::Receiver<()>,
}

/// What a lookup finds of an entry on its way into the backend.
#[derive(Debug)]
pub enum Pending<T> {
    /// Computed from a read with the lookup's own mark: the answer.
    Ready(T),
    /// Computed from an earlier read: its write ends the wait (the sender is dropped).
    Landing(tokio::sync::watch::Receiver<()>),
}

impl<T> Default for PendingWrites<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Clone> PendingWrites<T> {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, PendingEntry<T>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a write of `key`, computed from the read marked `since`; whoever writes it
    /// drops the returned sender once the write is done (or given up).
    pub fn insert(&self, key: String, since: ReadMark, value: T) -> tokio::sync::watch::Sender<()> {
        let (sender, landed) = tokio::sync::watch::channel(());
        self.lock().insert(
            key,
            PendingEntry {
                since,
                value,
                landed,
            },
        );
        sender
    }

    /// Once the write of `key` from the read marked `since` is done; a later write of the
    /// same key (from a later read) stays.
    pub fn remove(&self, key: &str, since: ReadMark) {
        let mut pending = self.lock();
        if pending.get(key).is_some_and(|entry| entry.since == since) {
            pending.remove(key);
        }
    }

    /// The entry of `key` on its way in, seen by a lookup marked `mark`.
    pub fn get(&self, key: &str, mark: ReadMark) -> Option<Pending<T>> {
        let pending = self.lock();
        if pending.is_empty() {
            return None;
        }
        pending.get(key).map(|entry| {
            if entry.since == mark {
                Pending::Ready(entry.value.clone())
            } else {
                Pending::Landing(entry.landed.clone())
            }
        })
    }

    /// The first of `keys` on its way in, seen by a lookup marked `mark`.
    pub fn get_first(&self, keys: &[String], mark: ReadMark) -> Option<Pending<T>> {
        keys.iter().find_map(|key| self.get(key, mark))
    }
}

/// In-process: entries and a tag → keys index, both bounded by size and `max_ttl`, and the
/// invalidation counter with the latest number of each tag.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    entries: Cache<String, StoredEntry>,
    tags: Cache<String, Arc<Mutex<HashSet<String>>>>,
    invalidations: Arc<AtomicU64>,
    invalidated: Cache<String, u64>,
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
            invalidations: Arc::new(AtomicU64::new(0)),
            invalidated: Cache::builder()
                .max_capacity(capacity.saturating_mul(4))
                .time_to_live(max_ttl)
                .build(),
        }
    }

    fn mark(&self) -> ReadMark {
        ReadMark(self.invalidations.load(Ordering::SeqCst))
    }

    /// Whether a tag was invalidated after the read marked `since`.
    fn invalidated_since(&self, tags: &BTreeSet<String>, since: ReadMark) -> bool {
        tags.iter().any(|tag| {
            self.invalidated
                .get(tag)
                .is_some_and(|stamp| since.is_before(stamp))
        })
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

/// Entity-cache keys start with this; response keys with `response:`.
pub const ENTITY_KEY_PREFIX: &str = "entity:";

/// The Redis key of the invalidation counter (after the prefix).
const SEQUENCE_KEY: &str = "invalidation-seq";

/// One invalidation in Redis, atomically: take the next number, record it on every tag,
/// and delete the entries each tag lists and the tag sets. Atomic, so two invalidations of
/// one tag can never leave the older number on it, and an entry tagged after the number
/// was recorded sees it when it checks again.
/// KEYS: the counter, then the stamp keys, then the tag-set keys (as many as stamps).
/// ARGV: how long stamps are kept, in ms. Returns the keys of the entries it deleted.
const INVALIDATE_SCRIPT: &str = r"
local stamp = redis.call('INCR', KEYS[1])
local tags = (#KEYS - 1) / 2
local deleted = {}
for i = 1, tags do
  redis.call('SET', KEYS[1 + i], stamp, 'PX', ARGV[1])
  local tag_set = KEYS[1 + tags + i]
  for _, key in ipairs(redis.call('SMEMBERS', tag_set)) do
    if redis.call('DEL', key) == 1 then
      deleted[#deleted + 1] = key
    end
  end
  redis.call('DEL', tag_set)
end
return deleted
";

impl RedisBackend {
    /// Whether a tag was invalidated after the read marked `since`, from the stamps an
    /// `MGET` of `inv:<tag>` returned.
    fn any_after(stamps: Vec<Option<u64>>, since: ReadMark) -> bool {
        stamps
            .into_iter()
            .flatten()
            .any(|stamp| since.is_before(stamp))
    }
}

impl CacheBackend {
    /// In Redis when `shared` is set, otherwise in this process.
    pub fn new(shared: Option<SharedState>, capacity: u64, max_ttl: Duration) -> Self {
        match shared {
            Some(shared) => Self::Redis(RedisBackend { shared, max_ttl }),
            None => Self::Local(LocalBackend::new(capacity, max_ttl)),
        }
    }

    /// Each of `keys`, or `None` where absent, and the mark of a read that starts now (read
    /// in the same round trip).
    pub async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<(Vec<Option<String>>, ReadMark), SharedStateError> {
        match self {
            Self::Local(local) => {
                let mark = local.mark();
                let values = keys
                    .iter()
                    .map(|key| {
                        local
                            .entries
                            .get(key)
                            .filter(|entry| entry.expires_at > Instant::now())
                            .map(|entry| entry.value)
                    })
                    .collect();
                Ok((values, mark))
            }
            Self::Redis(redis) => {
                let mut command = redis::cmd("MGET");
                command.arg(redis.shared.key(SEQUENCE_KEY));
                for key in keys {
                    command.arg(redis.shared.key(key));
                }
                let mut values: Vec<Option<String>> = redis.shared.query(&command).await?;
                if values.len() != keys.len() + 1 {
                    return Err(SharedStateError::Unexpected(format!(
                        "MGET of {} keys gave {} values",
                        keys.len() + 1,
                        values.len()
                    )));
                }
                let sequence = values.remove(0);
                let mark = match sequence.map(|value| value.parse::<u64>()) {
                    None => ReadMark(0),
                    Some(Ok(sequence)) => ReadMark(sequence),
                    Some(Err(err)) => {
                        return Err(SharedStateError::Unexpected(format!(
                            "the invalidation counter is not a number: {err}"
                        )));
                    }
                };
                Ok((values, mark))
            }
        }
    }

    /// The first of `keys` that is present, and the mark of a read that starts now.
    pub async fn get_first(
        &self,
        keys: &[String],
    ) -> Result<(Option<String>, ReadMark), SharedStateError> {
        let (values, mark) = self.get_many(keys).await?;
        Ok((values.into_iter().flatten().next(), mark))
    }

    /// Stores `value` under `key`, tagged, unless one of `tags` was invalidated after the
    /// read marked `since` (the one that computed it) began; `Ok(false)` then.
    pub async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
        tags: &BTreeSet<String>,
        since: ReadMark,
    ) -> Result<bool, SharedStateError> {
        match self {
            Self::Local(local) => {
                if local.invalidated_since(tags, since) {
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
                if local.invalidated_since(tags, since) {
                    local.entries.invalidate(key);
                    return Ok(false);
                }
                Ok(true)
            }
            Self::Redis(redis) => {
                if !tags.is_empty() {
                    let mut command = redis::cmd("MGET");
                    for tag in tags {
                        command.arg(redis.shared.key(&format!("inv:{tag}")));
                    }
                    let stamps: Vec<Option<u64>> = redis.shared.query(&command).await?;
                    if RedisBackend::any_after(stamps, since) {
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
                // An invalidation that read the tag sets before this SADD missed the key;
                // it recorded its number before reading them, so the number is visible now.
                pipe.cmd("MGET").arg(&stamp_keys);
                let (stamps,): (Vec<Option<u64>>,) = redis.shared.query(&pipe).await?;
                if RedisBackend::any_after(stamps, since) {
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

    /// Removes every entry tagged with any of `tags` and records the invalidation on them;
    /// returns how many entries were removed.
    pub async fn invalidate(&self, tags: &BTreeSet<String>) -> Result<Removed, SharedStateError> {
        let mut removed = Removed::default();
        if tags.is_empty() {
            return Ok(removed);
        }
        match self {
            Self::Local(local) => {
                // Numbered before the tag sets are read, as in Redis: a store that tags its
                // entry after this reads them sees the number when it checks again.
                let stamp = local.invalidations.fetch_add(1, Ordering::SeqCst) + 1;
                for tag in tags {
                    local
                        .invalidated
                        .entry(tag.clone())
                        .and_upsert_with(|known| {
                            known.map_or(stamp, |known| (*known.value()).max(stamp))
                        });
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
                let stamp_ttl = u64::try_from(redis.max_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let mut script = redis::cmd("EVAL");
                script
                    .arg(INVALIDATE_SCRIPT)
                    .arg(1 + 2 * tags.len())
                    .arg(redis.shared.key(SEQUENCE_KEY));
                for tag in tags {
                    script.arg(redis.shared.key(&format!("inv:{tag}")));
                }
                for tag in tags {
                    script.arg(redis.shared.key(&format!("tag:{tag}")));
                }
                script.arg(stamp_ttl);
                let deleted: Vec<String> = redis.shared.query(&script).await?;
                let entity_prefix = redis.shared.key(ENTITY_KEY_PREFIX);
                for key in deleted {
                    removed.count(key.starts_with(&entity_prefix));
                }
                Ok(removed)
            }
        }
    }
}
