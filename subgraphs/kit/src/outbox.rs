//! Waking outbox consumers. Events are always read from the outbox table, so nothing is
//! lost while a consumer is down; when producer and consumer share a process, the producer
//! also rings this bell after committing so the consumer reacts at once instead of at its
//! next poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    /// A new event was committed.
    pub fn notify(&self) {
        self.0.notify_one();
    }

    /// Completes after the next `notify` (or at once if one is pending).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// One pause of an outbox loop: until `wait` has passed or `signal` rings, whichever comes
/// first. Returns `true` when `stop` turned true meanwhile, and the loop should end.
pub async fn pause(
    wait: Duration,
    signal: Option<&OutboxSignal>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = async {
            match signal {
                Some(signal) => signal.notified().await,
                None => std::future::pending().await,
            }
        } => false,
        _ = stop.wait_for(|stop| *stop) => true,
    }
}
