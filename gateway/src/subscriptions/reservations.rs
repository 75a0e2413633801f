//! The streams of the single connection mode (`event_streams`) this process holds: who
//! reserved each, its channel, its operations, and whether it is open yet.
//!
//! A reservation costs the gateway nothing until its stream opens except a place among the
//! *pending* ones (reserved, not opened), and those are bounded apart from everything else:
//! per client address and per process, both small, so that reserving cannot hold the
//! process's stream or subscription places for others. A pending place is given back when
//! the stream opens or the reservation expires; an open stream counts against the
//! process's limit of open streams until its client closes it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use axum::response::sse::Event as SseEvent;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::EVENT_STREAMS_GAUGE;

/// Events an open stream may fall behind by before its operations wait for it.
const BACKLOG: usize = 256;

/// Whose pending reservations count together: a client's address, an IPv6 one by its
/// /64 (what one subscriber is given, so a host cannot multiply its places by picking
/// addresses), or every client whose address is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey(Option<IpAddr>);

impl AddressKey {
    pub fn of(addr: Option<IpAddr>) -> Self {
        Self(addr.map(|addr| match addr {
            IpAddr::V4(_) => addr,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
            },
        }))
    }
}

/// The limits a new reservation is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReservationLimits {
    /// Pending reservations of one client address.
    pub pending_per_address: usize,
    /// Pending reservations of the process.
    pub pending: usize,
    /// Open streams of the process.
    pub open: usize,
}

/// Why a reservation was refused, with the limit that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    PendingPerAddress(usize),
    Pending(usize),
    Open(usize),
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotOpened {
    NotFound,
    AlreadyOpen,
}

/// One reserved (and perhaps open) stream.
pub(crate) struct Reservation {
    /// Who reserved it: only they open it, run and stop operations on it.
    pub caller: Option<Uuid>,
    pub sender: mpsc::Sender<SseEvent>,
    stage: Stage,
    /// Operation id → the number it was started as (so a finished operation cannot forget
    /// a later one that reuses its id), and its task once it runs.
    pub operations: HashMap<String, (u64, Option<AbortHandle>)>,
    pub started: u64,
    _counted: CountedStream,
}

enum Stage {
    /// Reserved, not opened: holds a pending place of `from` until it opens or expires.
    Pending {
        from: AddressKey,
        receiver: mpsc::Receiver<SseEvent>,
        /// The timer that expires it, stopped when it opens.
        expiry: Option<AbortHandle>,
    },
    Open,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for task in self
            .operations
            .values()
            .filter_map(|(_, task)| task.as_ref())
        {
            task.abort();
        }
    }
}

/// Counts a reservation on the gauge until dropped.
struct CountedStream;

impl CountedStream {
    fn new() -> Self {
        metrics::gauge!(EVENT_STREAMS_GAUGE).increment(1.0);
        Self
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        metrics::gauge!(EVENT_STREAMS_GAUGE).decrement(1.0);
    }
}

/// The reserved and open streams of this process, by token, and the pending ones'
/// counts. Every change of stage goes through its methods, so the counts cannot drift.
#[derive(Default)]
pub(crate) struct Registry {
    streams: HashMap<String, Reservation>,
    pending_per_address: HashMap<AddressKey, usize>,
    pending: usize,
}

impl Registry {
    /// Reservations and open streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Reservations not opened yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn get(&self, token: &str) -> Option<&Reservation> {
        self.streams.get(token)
    }

    pub fn get_mut(&mut self, token: &str) -> Option<&mut Reservation> {
        self.streams.get_mut(token)
    }

    /// Reserves the stream `token` for `caller` at `from`, unless a limit is reached.
    pub fn reserve(
        &mut self,
        token: String,
        caller: Option<Uuid>,
        from: AddressKey,
        limits: ReservationLimits,
    ) -> Result<(), Refused> {
        let open = self.streams.len() - self.pending;
        if open >= limits.open {
            return Err(Refused::Open(limits.open));
        }
        let of_address = self.pending_per_address.get(&from).copied().unwrap_or(0);
        if of_address >= limits.pending_per_address {
            return Err(Refused::PendingPerAddress(limits.pending_per_address));
        }
        if self.pending >= limits.pending {
            return Err(Refused::Pending(limits.pending));
        }
        let (sender, receiver) = mpsc::channel(BACKLOG);
        self.streams.insert(
            token,
            Reservation {
                caller,
                sender,
                stage: Stage::Pending {
                    from,
                    receiver,
                    expiry: None,
                },
                operations: HashMap::new(),
                started: 0,
                _counted: CountedStream::new(),
            },
        );
        *self.pending_per_address.entry(from).or_insert(0) += 1;
        self.pending += 1;
        Ok(())
    }

    /// Records the timer that expires the pending reservation `token`.
    pub fn set_expiry(&mut self, token: &str, timer: AbortHandle) {
        match self.streams.get_mut(token).map(|stream| &mut stream.stage) {
            Some(Stage::Pending { expiry, .. }) => *expiry = Some(timer),
            _ => timer.abort(),
        }
    }

    /// Opens the stream `token`: its receiver, and its pending place given back.
    pub fn open(&mut self, token: &str) -> Result<mpsc::Receiver<SseEvent>, NotOpened> {
        let stream = self.streams.get_mut(token).ok_or(NotOpened::NotFound)?;
        match std::mem::replace(&mut stream.stage, Stage::Open) {
            Stage::Pending {
                from,
                receiver,
                expiry,
            } => {
                if let Some(expiry) = expiry {
                    expiry.abort();
                }
                self.release(from);
                Ok(receiver)
            }
            Stage::Open => Err(NotOpened::AlreadyOpen),
        }
    }

    /// Removes the stream `token` (the caller drops it outside the lock: dropping stops
    /// its operations).
    pub fn remove(&mut self, token: &str) -> Option<Reservation> {
        let mut removed = self.streams.remove(token)?;
        if let Stage::Pending { from, expiry, .. } =
            std::mem::replace(&mut removed.stage, Stage::Open)
        {
            if let Some(expiry) = expiry {
                expiry.abort();
            }
            self.release(from);
        }
        Some(removed)
    }

    /// Removes the reservation `token` when it was never opened.
    pub fn expire(&mut self, token: &str) -> Option<Reservation> {
        let pending = matches!(
            self.streams.get(token).map(|stream| &stream.stage),
            Some(Stage::Pending { .. })
        );
        if !pending {
            return None;
        }
        // The timer asking is the one `remove` would stop: forget it first.
        if let Some(Stage::Pending { expiry, .. }) =
            self.streams.get_mut(token).map(|stream| &mut stream.stage)
        {
            expiry.take();
        }
        self.remove(token)
    }

    fn release(&mut self, from: AddressKey) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(count) = self.pending_per_address.get_mut(&from) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.pending_per_address.remove(&from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ReservationLimits = ReservationLimits {
        pending_per_address: 2,
        pending: 3,
        open: 4,
    };

    fn address(text: &str) -> AddressKey {
        AddressKey::of(text.parse().ok())
    }

    fn reserve(registry: &mut Registry, token: &str, from: &str) -> Result<(), Refused> {
        registry.reserve(token.to_owned(), None, address(from), LIMITS)
    }

    #[test]
    fn an_ipv6_address_counts_with_its_slash_64_and_a_mapped_ipv4_as_the_ipv4() {
        assert_eq!(address("2001:db8:1:2::1"), address("2001:db8:1:2:ffff::9"));
        assert_ne!(address("2001:db8:1:2::1"), address("2001:db8:1:3::1"));
        assert_eq!(address("::ffff:203.0.113.7"), address("203.0.113.7"));
        assert_ne!(address("203.0.113.7"), address("203.0.113.8"));
    }

    #[test]
    fn pending_reservations_are_refused_past_the_address_limit_then_the_process_limit() {
        let mut registry = Registry::default();
        assert_eq!(reserve(&mut registry, "a1", "203.0.113.1"), Ok(()));
        assert_eq!(reserve(&mut registry, "a2", "203.0.113.1"), Ok(()));
        assert_eq!(
            reserve(&mut registry, "a3", "203.0.113.1"),
            Err(Refused::PendingPerAddress(2))
        );
        assert_eq!(reserve(&mut registry, "b1", "203.0.113.2"), Ok(()));
        assert_eq!(
            reserve(&mut registry, "c1", "203.0.113.3"),
            Err(Refused::Pending(3))
        );
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn opening_or_expiring_gives_the_pending_place_back_and_open_streams_count_apart() {
        let mut registry = Registry::default();
        reserve(&mut registry, "a1", "203.0.113.1").ok();
        reserve(&mut registry, "a2", "203.0.113.1").ok();
        assert!(registry.open("a1").is_ok());
        assert_eq!(registry.open("a1").err(), Some(NotOpened::AlreadyOpen));
        assert!(
            registry.expire("a1").is_none(),
            "an open stream does not expire"
        );
        assert!(registry.expire("a2").is_some());
        assert_eq!(registry.pending(), 0);
        assert_eq!(reserve(&mut registry, "a3", "203.0.113.1"), Ok(()));
        assert_eq!(reserve(&mut registry, "a4", "203.0.113.1"), Ok(()));
        for token in ["a3", "a4"] {
            assert!(registry.open(token).is_ok());
        }
        assert_eq!(reserve(&mut registry, "b1", "203.0.113.2"), Ok(()));
        assert!(registry.open("b1").is_ok());
        assert_eq!(
            reserve(&mut registry, "c1", "203.0.113.3"),
            Err(Refused::Open(4))
        );
        drop(registry.remove("b1"));
        assert_eq!(reserve(&mut registry, "c1", "203.0.113.3"), Ok(()));
        assert_eq!(registry.pending(), 1);
    }
}
