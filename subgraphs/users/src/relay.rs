//! The outbox relay: hands the events this subgraph committed to its outbox over to Redis
//! Streams (`{prefix}events:users`), for subgraphs with databases of their own. It runs
//! beside `gantry subgraph users` when events travel through Redis.
//!
//! Each pass takes the oldest unpublished events (`published_at IS NULL`, so one that
//! committed after a later one is found too), appends them to the stream, and marks them
//! published in the same transaction that selected them. On PostgreSQL the rows are
//! locked (`FOR UPDATE SKIP LOCKED`), so replicas of this subgraph relay different events
//! side by side. A relay that stops between the append and the commit sends those events
//! again: delivery is at least once, and consumers take repeats as no change.

use std::time::Duration;

use chrono::Utc;
use gantry_entities::outbox_event;
use gantry_kit::db::begin_write;
use gantry_kit::events::{Event, EventStreamError, StreamPublisher};
use gantry_kit::outbox::OutboxSignal;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::watch;

/// The producer name of this subgraph's stream.
pub const PRODUCER: &str = "users";

/// Events relayed per transaction.
const BATCH: u64 = 100;

/// Why a pass of the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the outbox: {0}")]
    Database(#[from] DbErr),
    #[error("appending to the event stream: {0}")]
    Stream(#[from] EventStreamError),
}

/// Moves committed outbox events to the stream.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    db: DatabaseConnection,
    publisher: StreamPublisher,
    poll_interval: Duration,
    signal: Option<OutboxSignal>,
}

impl OutboxRelay {
    /// `signal` is the bell this subgraph rings after committing an event, so the relay
    /// sends it at once rather than at its next poll.
    pub fn new(
        db: DatabaseConnection,
        publisher: StreamPublisher,
        poll_interval: Duration,
        signal: Option<OutboxSignal>,
    ) -> Self {
        Self {
            db,
            publisher,
            poll_interval,
            signal,
        }
    }

    /// Relays until `stop` turns true: at start, at every poll interval, and when the
    /// bell rings. Failures are logged once and retried with growing pauses.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(stream = self.publisher.stream(), "outbox relay started");
        let mut failures = 0u32;
        loop {
            let wait = match self.drain().await {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!("outbox relay recovered");
                    }
                    failures = 0;
                    self.poll_interval
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %err, "relaying outbox events failed; retrying");
                    }
                    (self.poll_interval * failures.min(30)).min(Duration::from_secs(30))
                }
            };
            if gantry_kit::outbox::pause(wait, self.signal.as_ref(), &mut stop).await {
                tracing::info!("outbox relay stopped");
                return;
            }
        }
    }

    /// Relays every unpublished event; returns how many.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut relayed = 0;
        loop {
            let n = self.relay_batch().await?;
            relayed += n;
            if n < BATCH as usize {
                return Ok(relayed);
            }
        }
    }

    async fn relay_batch(&self) -> Result<usize, RelayError> {
        let txn = begin_write(&self.db).await?;
        let mut query = outbox_event::Entity::find()
            .filter(outbox_event::Column::PublishedAt.is_null())
            .order_by_asc(outbox_event::Column::Id)
            .limit(BATCH);
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = query.all(&txn).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events: Vec<Event> = rows
            .iter()
            .map(|row| Event {
                id: row.id.to_string(),
                topic: row.topic.clone(),
                payload: row.payload.clone(),
            })
            .collect();
        self.publisher.publish(&events).await?;
        outbox_event::Entity::update_many()
            .col_expr(outbox_event::Column::PublishedAt, Expr::value(Utc::now()))
            .filter(outbox_event::Column::Id.is_in(rows.iter().map(|row| row.id)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        tracing::debug!(events = rows.len(), "relayed outbox events");
        Ok(rows.len())
    }
}
