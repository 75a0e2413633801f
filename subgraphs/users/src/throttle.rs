//! Login throttling. Failed logins are counted per account and per client address; past a
//! threshold each further attempt must wait, the wait doubling with every failure up to a
//! cap. Nothing is locked for good: waits expire, counts are forgotten after a quiet
//! window, and a successful login clears the account's count.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use gantry_kit::ApiError;
use moka::sync::Cache;

/// Throttle settings; defaults suit a public sign-in form.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures on one account before waits begin. Default 5.
    pub account_threshold: u32,
    /// Failures from one address before waits begin. Default 20.
    pub address_threshold: u32,
    /// First wait. Default 1 s; each further failure doubles it.
    pub base_delay: Duration,
    /// Longest wait. Default 15 minutes.
    pub max_delay: Duration,
    /// Counts are forgotten after this long without a failure. Default 15 minutes.
    pub window: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            account_threshold: 5,
            address_threshold: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Option<Instant>,
}

/// Failure counters, in process memory.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Cache<String, Failures>,
    addresses: Cache<IpAddr, Failures>,
    settings: ThrottleSettings,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(settings.window)
                .build(),
            addresses: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(settings.window)
                .build(),
            settings,
        }
    }

    /// `RATE_LIMITED` (with the seconds to wait) while the account or address must wait.
    pub fn check(&self, account: &str, addr: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let wait = [self.accounts.get(account), self.addresses.get(&addr)]
            .into_iter()
            .flatten()
            .filter_map(|f| f.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(ApiError::rate_limited(
                wait.as_secs_f64().ceil().max(1.0) as u64
            )),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, account: &str, addr: IpAddr) {
        let s = &self.settings;
        bump(&self.accounts, account.to_owned(), s.account_threshold, s);
        bump(&self.addresses, addr, s.address_threshold, s);
    }

    pub fn record_success(&self, account: &str) {
        self.accounts.invalidate(account);
    }
}

fn bump<K: Hash + Eq + Send + Sync + Clone + 'static>(
    cache: &Cache<K, Failures>,
    key: K,
    threshold: u32,
    settings: &ThrottleSettings,
) {
    cache.entry(key).and_upsert_with(|current| {
        let count = current
            .map_or(0, |e| e.into_value().count)
            .saturating_add(1);
        let blocked_until = (count >= threshold).then(|| {
            let doublings = (count - threshold).min(20);
            let delay = settings
                .base_delay
                .saturating_mul(1 << doublings)
                .min(settings.max_delay);
            Instant::now() + delay
        });
        Failures {
            count,
            blocked_until,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            account_threshold: 3,
            address_threshold: 10,
            base_delay: Duration::from_secs(60),
            ..Default::default()
        })
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn failures_below_the_threshold_do_not_throttle() {
        let t = throttle();
        t.record_failure("alice", addr(1));
        t.record_failure("alice", addr(1));
        assert!(t.check("alice", addr(1)).is_ok());
    }

    #[test]
    fn reaching_the_threshold_throttles_the_account_from_any_address() {
        let t = throttle();
        for _ in 0..3 {
            t.record_failure("alice", addr(1));
        }
        let err = t.check("alice", addr(2)).expect_err("throttled");
        assert_eq!(err.retry_after_secs, Some(60));
        assert!(t.check("bob", addr(2)).is_ok());
    }

    #[test]
    fn each_further_failure_doubles_the_wait_up_to_the_cap() {
        let t = throttle();
        for _ in 0..5 {
            t.record_failure("alice", addr(1));
        }
        assert_eq!(
            t.check("alice", addr(9))
                .expect_err("throttled")
                .retry_after_secs,
            Some(240)
        );
        for _ in 0..20 {
            t.record_failure("alice", addr(1));
        }
        assert_eq!(
            t.check("alice", addr(9))
                .expect_err("throttled")
                .retry_after_secs,
            Some(900)
        );
    }

    #[test]
    fn many_accounts_failing_from_one_address_throttle_the_address() {
        let t = throttle();
        for i in 0..10 {
            t.record_failure(&format!("user{i}"), addr(1));
        }
        assert!(t.check("someone_else", addr(1)).is_err());
        assert!(t.check("someone_else", addr(2)).is_ok());
    }

    #[test]
    fn a_success_clears_the_account() {
        let t = throttle();
        for _ in 0..2 {
            t.record_failure("alice", addr(1));
        }
        t.record_success("alice");
        t.record_failure("alice", addr(1));
        assert!(t.check("alice", addr(1)).is_ok());
    }
}
