//! Rate limits by the generic cell rate algorithm (GCRA): `count` units per `period`, in
//! bursts of up to `count`. Each key keeps one timestamp (its theoretical arrival time), so
//! a limit costs one small value per active key.
//!
//! With Redis the check runs as one Lua script, atomically, on Redis's clock, so every
//! replica shares each key's allowance. When Redis does not answer in time, or without
//! Redis, the check falls back to an in-process limiter (`governor`) with the same rate: a
//! Redis outage loosens a limit to one allowance per replica, it never stops traffic.
//!
//! Keys are hashed before they are stored, so a client-chosen key (a client name) costs
//! the same few bytes however long it is.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use sha2::{Digest, Sha256};

use crate::shared::SharedState;

/// `count` units per `period`; up to `count` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub fn per(count: u32, period: Duration) -> Self {
        Self {
            count: count.max(1),
            period: period.max(Duration::from_millis(1)),
        }
    }

    /// Time between two units at the sustained rate.
    fn interval(&self) -> Duration {
        self.period / self.count
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit: the same request may pass after this long.
    Limited {
        retry_after: Duration,
    },
}

impl Verdict {
    /// Whole seconds to wait, at least one: what `Retry-After` says.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Allowed => None,
            Self::Limited { retry_after } => Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
        }
    }
}

/// The GCRA step in Redis. `KEYS[1]`: the key; `ARGV`: interval (ms, may be fractional),
/// burst tolerance (ms), cost. Returns 0 when allowed (and stores the new arrival time,
/// expiring when it no longer matters), else the milliseconds to wait.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > now then
  return math.max(1, math.ceil(allow_at - now))
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
";

/// Calls between two sweeps of keys the in-process limiter no longer needs.
const SWEEP_EVERY: u64 = 4096;

/// One named limit, shared through Redis when given one.
pub struct RateLimiter {
    name: &'static str,
    rate: Rate,
    shared: Option<SharedState>,
    script: redis::Script,
    local: Governor<u64, DefaultKeyedStateStore<u64>, DefaultClock>,
    calls: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `name` tells this limit's keys apart from every other's in Redis.
    pub fn new(name: &'static str, rate: Rate, shared: Option<SharedState>) -> Self {
        let burst = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Self {
            name,
            rate,
            shared,
            script: redis::Script::new(GCRA),
            local: Governor::keyed(quota),
            calls: AtomicU64::new(0),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Charges `cost` units to `key`. More units than the whole burst are never allowed.
    pub async fn check(&self, key: &str, cost: u32) -> Verdict {
        let cost = cost.max(1);
        if cost > self.rate.count {
            return Verdict::Limited {
                retry_after: self.rate.period,
            };
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(shared) = &self.shared {
            let key = shared.key(&format!("rl:{}:{}", self.name, hex::encode(&digest[..16])));
            let mut invocation = self.script.prepare_invoke();
            invocation
                .key(key)
                .arg(self.rate.interval().as_secs_f64() * 1000.0)
                .arg(self.rate.period.as_millis() as u64)
                .arg(cost);
            match shared.query::<u64>(&invocation).await {
                Ok(0) => return Verdict::Allowed,
                Ok(wait_ms) => {
                    return Verdict::Limited {
                        retry_after: Duration::from_millis(wait_ms),
                    };
                }
                Err(error) => {
                    tracing::debug!(limit = self.name, error = %error, "rate limit checked in process: Redis did not answer");
                }
            }
        }
        self.check_locally(u64::from_be_bytes(first_eight(&digest)), cost)
    }

    fn check_locally(&self, key: u64, cost: u32) -> Verdict {
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.local.retain_recent();
            self.local.shrink_to_fit();
        }
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match self.local.check_key_n(&key, cost) {
            Ok(Ok(())) => Verdict::Allowed,
            Ok(Err(not_until)) => Verdict::Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
            Err(_) => Verdict::Limited {
                retry_after: self.rate.period,
            },
        }
    }
}

fn first_eight(digest: &[u8; 32]) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_the_next_waits_about_one_interval() {
        let limiter = RateLimiter::new("test", Rate::per(3, Duration::from_secs(60)), None);
        for _ in 0..3 {
            assert_eq!(limiter.check("a", 1).await, Verdict::Allowed);
        }
        let verdict = limiter.check("a", 1).await;
        let wait = verdict.retry_after_secs().expect("limited");
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(
            limiter.check("b", 1).await,
            Verdict::Allowed,
            "keys are apart"
        );
    }

    #[tokio::test]
    async fn a_cost_counts_as_that_many_units_and_more_than_the_burst_never_passes() {
        let limiter = RateLimiter::new("test", Rate::per(10, Duration::from_secs(60)), None);
        assert_eq!(limiter.check("a", 7).await, Verdict::Allowed);
        assert!(matches!(
            limiter.check("a", 7).await,
            Verdict::Limited { .. }
        ));
        assert_eq!(limiter.check("a", 3).await, Verdict::Allowed);
        assert!(matches!(
            limiter.check("b", 11).await,
            Verdict::Limited { .. }
        ));
    }
}
