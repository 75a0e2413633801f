//! A subgraph's live-event table (`post_live_events`, `user_live_events`): events are
//! written in the transaction of their change ([`record`]) and handed on by the
//! [`LiveRelay`] once committed.
//!
//! Each pass of the relay takes the oldest unpublished events (`published_at IS NULL`,
//! so one that committed after a later one is found too), publishes them, and marks them
//! published in the transaction that selected them. On PostgreSQL the rows are locked
//! (`FOR UPDATE SKIP LOCKED`), so replicas relay different events side by side and each
//! event once. Published events older than [`super::LiveSettings::retention`] are
//! deleted.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use tokio::sync::watch;
use uuid::Uuid;

use super::channel::{ChannelError, RedisLive};
use super::{LiveBus, LiveEvent};
use crate::db::begin_write;
use crate::outbox::OutboxSignal;

/// Events relayed per transaction.
const BATCH: u64 = 100;

/// How often published events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Writes a live event into `table` on `txn`, the transaction of the change it tells of.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    table: &'static str,
    topic: &str,
    payload: &serde_json::Value,
) -> Result<(), DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(table))
        .columns([
            Alias::new("id"),
            Alias::new("topic"),
            Alias::new("payload"),
            Alias::new("created_at"),
        ])
        .values([
            Uuid::now_v7().into(),
            topic.into(),
            payload.to_string().into(),
            Utc::now().into(),
        ])
        .map_err(|err| DbErr::Custom(format!("recording a live event: {err}")))?;
    txn.execute(&insert).await?;
    Ok(())
}

/// Where relayed events go.
#[derive(Debug, Clone)]
pub enum LiveSink {
    /// This process's subscribers only (one process serves them all).
    Process(LiveBus),
    /// Every replica's subscribers, through the Redis channel.
    Redis(Box<RedisLive>),
}

impl LiveSink {
    async fn publish(&self, events: Vec<LiveEvent>) -> Result<(), ChannelError> {
        match self {
            Self::Process(bus) => {
                for event in events {
                    bus.publish(event);
                }
                Ok(())
            }
            Self::Redis(channel) => channel.publish(&events).await,
        }
    }
}

/// Why a pass of the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the live-event table: {0}")]
    Database(#[from] DbErr),
    #[error("publishing live events: {0}")]
    Channel(#[from] ChannelError),
}

/// Moves committed live events from a table to their subscribers.
#[derive(Debug, Clone)]
pub struct LiveRelay {
    db: DatabaseConnection,
    table: &'static str,
    sink: LiveSink,
    poll_interval: Duration,
    retention: Duration,
    signal: OutboxSignal,
}

impl LiveRelay {
    /// `signal` is the bell the subgraph rings after committing an event.
    pub fn new(
        db: DatabaseConnection,
        table: &'static str,
        sink: LiveSink,
        settings: &super::LiveSettings,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            db,
            table,
            sink,
            poll_interval: settings.relay_poll_interval,
            retention: settings.retention,
            signal,
        }
    }

    /// Relays until `stop` turns true: at start, when the bell rings and at every poll
    /// interval. Failures are logged once and retried with growing pauses.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(table = self.table, "live-event relay started");
        let mut failures = 0u32;
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            let pass = async {
                let relayed = self.drain().await?;
                if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    self.prune().await?;
                    last_prune = Some(tokio::time::Instant::now());
                }
                Ok::<usize, RelayError>(relayed)
            };
            let wait = match pass.await {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(table = self.table, "live-event relay recovered");
                    }
                    failures = 0;
                    self.poll_interval
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(table = self.table, error = %err, "relaying live events failed; retrying");
                    }
                    std::cmp::min(
                        self.poll_interval * std::cmp::min(failures, 30),
                        Duration::from_secs(30),
                    )
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.signal.notified() => {}
                _ = stop.wait_for(|stop| *stop) => {
                    tracing::info!(table = self.table, "live-event relay stopped");
                    return;
                }
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
        let table = Alias::new(self.table);
        let txn = begin_write(&self.db).await?;
        let mut select = Query::select();
        select
            .columns([Alias::new("id"), Alias::new("topic"), Alias::new("payload")])
            .from(table.clone())
            .and_where(Expr::col(Alias::new("published_at")).is_null())
            .order_by(Alias::new("id"), Order::Asc)
            .limit(BATCH);
        if txn.get_database_backend() == DbBackend::Postgres {
            select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = txn.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events = rows
            .iter()
            .map(|row| {
                Ok(LiveEvent {
                    id: row.try_get("", "id")?,
                    topic: row.try_get("", "topic")?,
                    payload: row.try_get("", "payload")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let count = events.len();
        self.sink.publish(events).await?;
        let mut update = Query::update();
        update
            .table(table)
            .value(Alias::new("published_at"), Utc::now())
            .and_where(Expr::col(Alias::new("id")).is_in(ids));
        txn.execute(&update).await?;
        txn.commit().await?;
        metrics::counter!("gantry_live_events_relayed_total", "table" => self.table)
            .increment(count as u64);
        Ok(count)
    }

    /// Deletes published events past their retention.
    async fn prune(&self) -> Result<(), DbErr> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::minutes(10));
        let mut delete = Query::delete();
        delete
            .from_table(Alias::new(self.table))
            .and_where(Expr::col(Alias::new("published_at")).lt(cutoff));
        self.db.execute(&delete).await?;
        Ok(())
    }
}
