//! How many subscriptions a subgraph holds at once: per WebSocket connection (so one
//! client cannot take a process's share) and per process (so a process's memory stays
//! bounded). A subscription holds a [`SubscriptionPermit`] for as long as its stream
//! lives; ending it (the client's `complete`, or the connection closing) gives it back.
//! Refused subscriptions get `TOO_MANY_SUBSCRIPTIONS` with `extensions.limit`
//! `subscriptionsPerConnection` or `subscriptionsPerProcess`.
//!
//! Metric: `gantry_subscriptions_active{subgraph}`, the subscriptions held now.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The limits of one subgraph process, shared by its schema (which takes permits) and
/// its WebSocket endpoint (which gives each connection its own share).
#[derive(Debug, Clone)]
pub struct SubscriptionLimits {
    subgraph: &'static str,
    per_connection: usize,
    per_process: usize,
    process: Arc<Semaphore>,
}

/// One connection's share: what the WebSocket endpoint puts into the connection's data.
#[derive(Debug, Clone)]
pub struct ConnectionSubscriptions {
    max: usize,
    held: Arc<Semaphore>,
}

/// Held by a live subscription; dropping it frees its place.
#[derive(Debug)]
pub struct SubscriptionPermit {
    subgraph: &'static str,
    _process: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        metrics::gauge!("gantry_subscriptions_active", "subgraph" => self.subgraph).decrement(1.0);
    }
}

impl SubscriptionLimits {
    /// At most `per_connection` subscriptions on one connection and `per_process` in all
    /// (each at least 1).
    pub fn new(subgraph: &'static str, per_connection: usize, per_process: usize) -> Self {
        let per_process = per_process.max(1);
        Self {
            subgraph,
            per_connection: per_connection.max(1),
            per_process,
            process: Arc::new(Semaphore::new(per_process)),
        }
    }

    /// A new connection's share.
    pub fn connection(&self) -> ConnectionSubscriptions {
        ConnectionSubscriptions {
            max: self.per_connection,
            held: Arc::new(Semaphore::new(self.per_connection)),
        }
    }

    /// A place for one more subscription on `connection` (none for a caller in the same
    /// process, which brings no connection), or why there is none.
    pub fn acquire(
        &self,
        connection: Option<&ConnectionSubscriptions>,
    ) -> Result<SubscriptionPermit, ApiError> {
        let connection = connection
            .map(|connection| {
                connection.held.clone().try_acquire_owned().map_err(|_| {
                    ApiError::too_many_subscriptions("subscriptionsPerConnection", connection.max)
                })
            })
            .transpose()?;
        let process = self.process.clone().try_acquire_owned().map_err(|_| {
            ApiError::too_many_subscriptions("subscriptionsPerProcess", self.per_process)
        })?;
        metrics::gauge!("gantry_subscriptions_active", "subgraph" => self.subgraph).increment(1.0);
        Ok(SubscriptionPermit {
            subgraph: self.subgraph,
            _process: process,
            _connection: connection,
        })
    }

    /// A place for the subscription a resolver is starting, on the connection in `ctx`.
    pub fn acquire_for(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> Result<SubscriptionPermit, ApiError> {
        self.acquire(ctx.data_opt::<ConnectionSubscriptions>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn a_connection_past_its_share_is_refused_and_says_which_limit() {
        let limits = SubscriptionLimits::new("posts", 2, 10);
        let connection = limits.connection();
        let _a = limits.acquire(Some(&connection)).expect("first");
        let _b = limits.acquire(Some(&connection)).expect("second");
        let refused = limits.acquire(Some(&connection)).expect_err("third");
        assert_eq!(refused.code, ErrorCode::TooManySubscriptions);
        assert_eq!(refused.limit, Some("subscriptionsPerConnection"));
        let other = limits.connection();
        assert!(
            limits.acquire(Some(&other)).is_ok(),
            "another connection has its own share"
        );
    }

    #[test]
    fn the_process_limit_holds_over_every_connection_and_frees_on_drop() {
        let limits = SubscriptionLimits::new("posts", 5, 2);
        let a = limits.acquire(Some(&limits.connection())).expect("first");
        let _b = limits.acquire(None).expect("second");
        let refused = limits
            .acquire(Some(&limits.connection()))
            .expect_err("third");
        assert_eq!(refused.limit, Some("subscriptionsPerProcess"));
        drop(a);
        assert!(limits.acquire(None).is_ok(), "a freed place is taken again");
    }
}
