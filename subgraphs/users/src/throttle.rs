//! Login throttling and the registration limit.
//!
//! Each sign-in attempt is counted per account and per client address *before* the
//! password is verified: a reservation, taken atomically for both, that is refused while
//! either must wait. Past a threshold each further attempt makes the next wait, doubling up
//! to a cap; so 40 concurrent guesses at one account get at most the threshold verified,
//! the rest are refused at once. A successful attempt clears its account's count and gives
//! its address back the attempt it took. Nothing is locked for good: waits expire, counts
//! are forgotten after a quiet window.
//!
//! The account is the one the login resolved to (`alice` and `alice@example.com` count
//! together); a login that names no account is counted under a digest of its text. The
//! address is the client's as the gateway decided it (see [`gantry_kit::client`]), so one
//! address's failures never make another address wait for a different account.
//!
//! With Redis the counters are shared by every replica (one Lua script per attempt);
//! without it, or while it does not answer, they live in this process.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gantry_kit::ApiError;
use gantry_kit::rate_limit::{Rate, RateLimiter, Verdict};
use gantry_kit::shared::SharedState;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The longest `login` worth looking up: the longest valid email (usernames are shorter).
/// A longer one is refused before any work.
pub const MAX_LOGIN_BYTES: usize = 254;

/// Throttle settings; defaults suit a public sign-in form.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Attempts on one account before waits begin. Default 5.
    pub account_threshold: u32,
    /// Attempts from one address before waits begin. Default 20.
    pub address_threshold: u32,
    /// First wait. Default 1 s; each further attempt doubles it.
    pub base_delay: Duration,
    /// Longest wait. Default 15 minutes.
    pub max_delay: Duration,
    /// Counts are forgotten after this long without an attempt. Default 15 minutes.
    pub window: Duration,
    /// Accounts one address may register per hour (in one burst at most). Default 20.
    pub registrations_per_hour: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            account_threshold: 5,
            address_threshold: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
            registrations_per_hour: 20,
        }
    }
}

/// Who a login attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    account: String,
    addr: IpAddr,
}

impl Attempt {
    /// `account` is the account the login resolved to; `None` when it names none, and
    /// then `login` (normalized) is counted, by its digest.
    pub fn new(account: Option<Uuid>, login: &str, addr: IpAddr) -> Self {
        let account = match account {
            Some(id) => format!("id:{id}"),
            None => format!(
                "login:{}",
                hex::encode(&Sha256::digest(login.as_bytes())[..16])
            ),
        };
        Self { account, addr }
    }
}

/// Counts after one more attempt, and when the next may come.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    count: u32,
    blocked_until: Option<Instant>,
}

/// Reserves an attempt on the account and the address at once: `ARGV` are the account and
/// address thresholds, base and longest wait and the window (ms). Returns 0, or the
/// milliseconds to wait when either must.
const RESERVE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function read(key)
  local v = redis.call('HMGET', key, 'count', 'until')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
local account_count, account_until = read(KEYS[1])
local address_count, address_until = read(KEYS[2])
local wait = math.max(account_until - now, address_until - now, 0)
if wait > 0 then return math.ceil(wait) end
local base, longest, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function bump(key, count, threshold)
  count = count + 1
  local until_ms = 0
  if count >= threshold then
    until_ms = now + math.min(base * 2 ^ math.min(count - threshold, 20), longest)
  end
  redis.call('HSET', key, 'count', count, 'until', until_ms)
  redis.call('PEXPIRE', key, math.max(window, until_ms - now))
end
bump(KEYS[1], account_count, tonumber(ARGV[1]))
bump(KEYS[2], address_count, tonumber(ARGV[2]))
return 0
";

/// A successful attempt: the account starts over; the address gets its attempt back, and
/// its wait ends when that brings it under its threshold (`ARGV[1]`).
const SUCCEEDED: &str = r"
redis.call('DEL', KEYS[1])
local count = tonumber(redis.call('HGET', KEYS[2], 'count'))
if count and count > 0 then
  count = count - 1
  redis.call('HSET', KEYS[2], 'count', count)
  if count < tonumber(ARGV[1]) then redis.call('HSET', KEYS[2], 'until', 0) end
end
return 0
";

/// Attempt counters, shared through Redis when configured.
pub struct LoginThrottle {
    settings: ThrottleSettings,
    shared: Option<SharedState>,
    reserve_script: redis::Script,
    succeeded_script: redis::Script,
    accounts: Cache<String, Counter>,
    addresses: Cache<IpAddr, Counter>,
    /// Makes the in-process reservation of both counters one step.
    local: Mutex<()>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("settings", &self.settings)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings, shared: Option<SharedState>) -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(settings.window)
                .build()
        };
        Self {
            accounts: cache(),
            addresses: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(settings.window)
                .build(),
            reserve_script: redis::Script::new(RESERVE),
            succeeded_script: redis::Script::new(SUCCEEDED),
            local: Mutex::new(()),
            shared,
            settings,
        }
    }

    fn keys(&self, shared: &SharedState, attempt: &Attempt) -> [String; 2] {
        [
            shared.key(&format!("login:account:{}", attempt.account)),
            shared.key(&format!("login:address:{}", attempt.addr)),
        ]
    }

    /// Takes an attempt for `attempt`'s account and address, or `RATE_LIMITED` (with the
    /// seconds to wait) while either must wait. Call it before verifying the password.
    pub async fn reserve(&self, attempt: &Attempt) -> Result<(), ApiError> {
        let s = &self.settings;
        if let Some(shared) = &self.shared {
            let [account, address] = self.keys(shared, attempt);
            let mut invocation = self.reserve_script.prepare_invoke();
            invocation
                .key(account)
                .key(address)
                .arg(s.account_threshold)
                .arg(s.address_threshold)
                .arg(s.base_delay.as_millis() as u64)
                .arg(s.max_delay.as_millis() as u64)
                .arg(s.window.as_millis() as u64);
            match shared.query::<u64>(&invocation).await {
                Ok(0) => return Ok(()),
                Ok(wait_ms) => return Err(rate_limited(Duration::from_millis(wait_ms))),
                Err(error) => {
                    tracing::warn!(error = %error, "login throttle counted in process: Redis did not answer");
                }
            }
        }
        self.reserve_locally(attempt)
    }

    fn reserve_locally(&self, attempt: &Attempt) -> Result<(), ApiError> {
        let _one_at_a_time = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let account = self.accounts.get(&attempt.account).unwrap_or_default();
        let address = self.addresses.get(&attempt.addr).unwrap_or_default();
        let wait = [account.blocked_until, address.blocked_until]
            .into_iter()
            .flatten()
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = wait {
            return Err(rate_limited(wait));
        }
        let s = &self.settings;
        self.accounts.insert(
            attempt.account.clone(),
            bump(account, s.account_threshold, s, now),
        );
        self.addresses
            .insert(attempt.addr, bump(address, s.address_threshold, s, now));
        Ok(())
    }

    /// The attempt succeeded: its account starts over, its address gets the attempt back.
    pub async fn succeeded(&self, attempt: &Attempt) {
        if let Some(shared) = &self.shared {
            let [account, address] = self.keys(shared, attempt);
            let mut invocation = self.succeeded_script.prepare_invoke();
            invocation
                .key(account)
                .key(address)
                .arg(self.settings.address_threshold);
            if shared.query::<u64>(&invocation).await.is_ok() {
                return;
            }
        }
        let _one_at_a_time = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        self.accounts.invalidate(&attempt.account);
        if let Some(mut address) = self.addresses.get(&attempt.addr) {
            address.count = address.count.saturating_sub(1);
            if address.count < self.settings.address_threshold {
                address.blocked_until = None;
            }
            self.addresses.insert(attempt.addr, address);
        }
    }
}

fn bump(counter: Counter, threshold: u32, settings: &ThrottleSettings, now: Instant) -> Counter {
    let count = counter.count.saturating_add(1);
    let blocked_until = (count >= threshold).then(|| {
        let doublings = (count - threshold).min(20);
        now + settings
            .base_delay
            .saturating_mul(1 << doublings)
            .min(settings.max_delay)
    });
    Counter {
        count,
        blocked_until,
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::rate_limited(wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// Account creation per client address, shared through Redis when configured.
#[derive(Debug)]
pub struct RegistrationLimit(RateLimiter);

impl RegistrationLimit {
    pub fn new(settings: &ThrottleSettings, shared: Option<SharedState>) -> Self {
        let rate = Rate::per(settings.registrations_per_hour, Duration::from_secs(3600));
        Self(RateLimiter::new("register", rate, shared))
    }

    /// `RATE_LIMITED` (with the seconds to wait) when `addr` registered too many accounts.
    pub async fn admit(&self, addr: IpAddr) -> Result<(), ApiError> {
        match self.0.check(&addr.to_string(), 1).await {
            Verdict::Allowed => Ok(()),
            limited => Err(ApiError::rate_limited(
                limited.retry_after_secs().unwrap_or(1),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(
            ThrottleSettings {
                account_threshold: 3,
                address_threshold: 10,
                base_delay: Duration::from_secs(60),
                ..Default::default()
            },
            None,
        )
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn alice(from: u8) -> Attempt {
        Attempt::new(Some(Uuid::nil()), "alice", addr(from))
    }

    #[tokio::test]
    async fn attempts_up_to_the_threshold_are_reserved_and_the_next_waits() {
        let t = throttle();
        for _ in 0..3 {
            t.reserve(&alice(1)).await.expect("reserved");
        }
        let err = t.reserve(&alice(2)).await.expect_err("throttled");
        assert_eq!(err.retry_after_secs, Some(60));
        let bob = Attempt::new(Some(Uuid::max()), "bob", addr(2));
        assert!(t.reserve(&bob).await.is_ok());
    }

    #[tokio::test]
    async fn the_account_is_counted_however_the_login_names_it() {
        let t = throttle();
        let id = Some(Uuid::nil());
        t.reserve(&Attempt::new(id, "alice", addr(1)))
            .await
            .expect("1");
        t.reserve(&Attempt::new(id, "alice@example.com", addr(2)))
            .await
            .expect("2");
        t.reserve(&Attempt::new(id, "alice", addr(3)))
            .await
            .expect("3");
        assert!(
            t.reserve(&Attempt::new(id, "alice@example.com", addr(4)))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn each_further_attempt_doubles_the_wait_up_to_the_cap() {
        let t = LoginThrottle::new(
            ThrottleSettings {
                account_threshold: 1,
                base_delay: Duration::from_secs(60),
                ..Default::default()
            },
            None,
        );
        let now = Instant::now();
        let mut counter = Counter::default();
        for _ in 0..3 {
            counter = bump(counter, 1, &t.settings, now);
        }
        assert_eq!(counter.blocked_until, Some(now + Duration::from_secs(240)));
        for _ in 0..30 {
            counter = bump(counter, 1, &t.settings, now);
        }
        assert_eq!(counter.blocked_until, Some(now + Duration::from_secs(900)));
    }

    #[tokio::test]
    async fn a_blocked_address_does_not_block_another_account_from_another_address() {
        let t = throttle();
        for i in 0..10 {
            let _ = t
                .reserve(&Attempt::new(None, &format!("user{i}"), addr(1)))
                .await;
        }
        let someone = Attempt::new(None, "someone_else", addr(1));
        assert!(t.reserve(&someone).await.is_err());
        assert!(
            t.reserve(&Attempt::new(None, "someone_else", addr(2)))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_success_clears_the_account_and_returns_the_address_attempt() {
        let t = throttle();
        for _ in 0..2 {
            t.reserve(&alice(1)).await.expect("reserved");
        }
        t.succeeded(&alice(1)).await;
        for _ in 0..2 {
            t.reserve(&alice(1)).await.expect("a fresh count");
        }
        assert_eq!(t.addresses.get(&addr(1)).map(|c| c.count), Some(3));
    }

    #[tokio::test]
    async fn registrations_per_address_are_limited() {
        let limit = RegistrationLimit::new(
            &ThrottleSettings {
                registrations_per_hour: 2,
                ..Default::default()
            },
            None,
        );
        assert!(limit.admit(addr(1)).await.is_ok());
        assert!(limit.admit(addr(1)).await.is_ok());
        let refused = limit.admit(addr(1)).await.expect_err("limited");
        assert!(refused.retry_after_secs.is_some_and(|secs| secs > 0));
        assert!(limit.admit(addr(2)).await.is_ok());
    }
}
