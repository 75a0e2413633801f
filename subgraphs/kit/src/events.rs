//! Events between subgraphs over Redis Streams, for subgraphs that keep their data in
//! databases of their own. A producing subgraph writes each event to its transactional
//! outbox in the transaction of the change; its relay hands committed events to
//! [`StreamPublisher`] (`XADD` to `{prefix}events:{producer}`). Each consuming subgraph
//! reads them as one consumer group named after itself ([`StreamConsumer`]:
//! `XREADGROUP`, `XACK` once handled), so every replica of it shares the work and each
//! event is handled by one of them.
//!
//! Delivery is at least once: an event is acknowledged only after its handler committed,
//! so one handled twice (the relay or a consumer stopped between the two steps) must
//! change nothing the second time; every handler is idempotent. An event a consumer took
//! but never acknowledged (it died, or the handler failed) is claimed again
//! (`XAUTOCLAIM`) once it has been idle for [`StreamSettings::claim_idle`]. One that its
//! handler cannot read ([`HandleError::Poison`]) is tried again that way, up to
//! [`StreamSettings::max_deliveries`] deliveries in all (a newer replica, mid-upgrade,
//! may read it), then moved to the dead-letter stream `{prefix}events:{producer}:dead`
//! for an operator; one that failed for a passing reason (its database did not answer)
//! is retried for as long as it takes.
//!
//! Metrics: `gantry_events_published_total{stream}`, `gantry_events_handled_total`,
//! `gantry_events_failed_total`, `gantry_events_dead_lettered_total`, and the gauges
//! `gantry_events_lag` (entries not yet delivered to the group) and
//! `gantry_events_pending` (delivered, not yet acknowledged), all by `{stream, group}`.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply, StreamReadReply,
};
use tokio::sync::watch;

/// How the event streams are reached and how stubborn their consumers are.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// `REDIS_URL`.
    pub url: String,
    /// Prepended to every stream name (`GANTRY_REDIS_PREFIX`).
    pub key_prefix: String,
    /// Deliveries of an event its handler cannot read before it goes to the dead-letter
    /// stream. Default 5.
    pub max_deliveries: u32,
    /// How long a delivered, unacknowledged event waits before it is delivered again
    /// (to any consumer of the group). Default 30 s.
    pub claim_idle: Duration,
    /// Entries a stream keeps, roughly (`XADD MAXLEN ~`): older ones are trimmed even if
    /// a group has not read them, so this bounds how long a consumer may stay away.
    /// Default 1,000,000.
    pub max_len: usize,
}

impl StreamSettings {
    /// The settings' defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            max_deliveries: 5,
            claim_idle: Duration::from_secs(30),
            max_len: 1_000_000,
        }
    }

    /// The stream `producer`'s events travel on.
    pub fn stream(&self, producer: &str) -> String {
        format!("{}events:{producer}", self.key_prefix)
    }

    /// Where events of `producer` that no consumer could read end up.
    pub fn dead_letters(&self, producer: &str) -> String {
        format!("{}:dead", self.stream(producer))
    }
}

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum EventStreamError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One event as it travels: the outbox row's id, topic and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub topic: String,
    pub payload: String,
}

/// How long one blocking read waits for new entries before the consumer looks after its
/// pending ones and its metrics.
const BLOCK: Duration = Duration::from_millis(1000);

/// Entries read, or claimed, at once.
const BATCH: usize = 100;

fn connection(
    url: &str,
    response_timeout: Duration,
) -> Result<ConnectionManager, EventStreamError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1);
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Appends events to one producer's stream.
#[derive(Clone)]
pub struct StreamPublisher {
    connection: ConnectionManager,
    stream: String,
    max_len: usize,
}

impl std::fmt::Debug for StreamPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPublisher")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl StreamPublisher {
    /// A publisher to `producer`'s stream. Redis need not answer yet.
    pub fn new(settings: &StreamSettings, producer: &str) -> Result<Self, EventStreamError> {
        Ok(Self {
            connection: connection(&settings.url, Duration::from_secs(5))?,
            stream: settings.stream(producer),
            max_len: settings.max_len,
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `events` in order, in one round trip (`MULTI`, so all or none).
    pub async fn publish(&self, events: &[Event]) -> Result<(), EventStreamError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in events {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("id")
                .arg(&event.id)
                .arg("topic")
                .arg(&event.topic)
                .arg("payload")
                .arg(&event.payload)
                .ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        metrics::counter!("gantry_events_published_total", "stream" => self.stream.clone())
            .increment(events.len() as u64);
        Ok(())
    }
}

/// Why a handler did not handle an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The event cannot be handled as it is (this version cannot read it): after
    /// [`StreamSettings::max_deliveries`] it goes to the dead-letter stream.
    #[error("unreadable event: {0}")]
    Poison(String),
    /// Handling failed for a reason that passes (the database did not answer): it is
    /// delivered again after [`StreamSettings::claim_idle`], however often that takes.
    #[error("{0}")]
    Retry(String),
}

/// What a consuming subgraph does with each event. Must be idempotent: an event may come
/// more than once.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// One consumer of a group reading one producer's stream, until told to stop.
pub struct StreamConsumer<H> {
    connection: ConnectionManager,
    settings: StreamSettings,
    stream: String,
    dead_letters: String,
    group: String,
    name: String,
    handler: H,
}

impl<H> std::fmt::Debug for StreamConsumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<H: EventHandler> StreamConsumer<H> {
    /// A consumer named uniquely (each process is a consumer of its own) in `group`, of
    /// `producer`'s stream. Redis need not answer yet.
    pub fn new(
        settings: StreamSettings,
        producer: &str,
        group: &str,
        handler: H,
    ) -> Result<Self, EventStreamError> {
        Ok(Self {
            connection: connection(&settings.url, BLOCK + Duration::from_secs(5))?,
            stream: settings.stream(producer),
            dead_letters: settings.dead_letters(producer),
            group: group.to_owned(),
            name: format!("{group}-{}", uuid::Uuid::now_v7().simple()),
            settings,
            handler,
        })
    }

    /// Handles events until `stop` turns true: new ones as they arrive, and those left
    /// unacknowledged by any consumer of the group once idle long enough. Redis going
    /// away is logged once and waited out.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.name, "event consumer started");
        let mut failing = false;
        let mut last_claim: Option<tokio::time::Instant> = None;
        loop {
            let step = async {
                self.ensure_group().await?;
                let claim_every = (self.settings.claim_idle / 2).max(Duration::from_millis(50));
                if last_claim.is_none_or(|at| at.elapsed() >= claim_every) {
                    self.claim_idle().await?;
                    last_claim = Some(tokio::time::Instant::now());
                }
                self.read_new().await?;
                self.measure().await
            };
            let outcome = tokio::select! {
                outcome = step => outcome,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            match outcome {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(stream = %self.stream, "event stream readable again");
                }
                Ok(()) => {}
                Err(err) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(stream = %self.stream, error = %err, "cannot read the event stream; retrying every second");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|stop| *stop) => break,
                    }
                }
            }
        }
        tracing::info!(stream = %self.stream, "event consumer stopped");
    }

    /// Creates the group at the stream's start (so events published before any consumer
    /// of it ran are read too), and the stream with it; an existing group is kept.
    async fn ensure_group(&self) -> Result<(), EventStreamError> {
        let mut connection = self.connection.clone();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        match created {
            Err(err) if err.code() != Some("BUSYGROUP") => Err(err.into()),
            _ => Ok(()),
        }
    }

    /// Reads entries never delivered to the group, waiting up to [`BLOCK`] for some.
    async fn read_new(&self) -> Result<(), EventStreamError> {
        let mut connection = self.connection.clone();
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut connection)
            .await?;
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in key.ids {
                self.deliver(&entry).await?;
            }
        }
        Ok(())
    }

    /// Takes over entries some consumer of the group (a dead one, or this one after a
    /// failure) left unacknowledged for [`StreamSettings::claim_idle`], and handles them.
    async fn claim_idle(&self) -> Result<(), EventStreamError> {
        let mut connection = self.connection.clone();
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(self.settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut connection)
                .await?;
            for entry in &reply.claimed {
                self.deliver(entry).await?;
            }
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            cursor = reply.next_stream_id;
        }
    }

    /// Hands one entry to the handler; acknowledges it when handled, moves it to the
    /// dead-letter stream when it cannot be and has had its deliveries.
    async fn deliver(&self, entry: &StreamId) -> Result<(), EventStreamError> {
        let labels = [
            ("stream", self.stream.clone()),
            ("group", self.group.clone()),
        ];
        let outcome = match event_of(entry) {
            Some(event) => self.handler.handle(&event).await,
            None => Err(HandleError::Poison(
                "an entry without id, topic and payload fields".into(),
            )),
        };
        match outcome {
            Ok(()) => {
                self.ack(&entry.id).await?;
                metrics::counter!("gantry_events_handled_total", &labels).increment(1);
            }
            Err(HandleError::Retry(cause)) => {
                metrics::counter!("gantry_events_failed_total", &labels).increment(1);
                tracing::warn!(stream = %self.stream, entry = %entry.id, error = %cause, "handling an event failed; it will be delivered again");
            }
            Err(HandleError::Poison(cause)) => {
                metrics::counter!("gantry_events_failed_total", &labels).increment(1);
                let deliveries = self.deliveries(&entry.id).await?;
                if deliveries >= self.settings.max_deliveries as usize {
                    self.dead_letter(entry, deliveries, &cause).await?;
                    metrics::counter!("gantry_events_dead_lettered_total", &labels).increment(1);
                    tracing::error!(stream = %self.stream, entry = %entry.id, deliveries, error = %cause, dead_letters = %self.dead_letters, "an event no consumer could handle went to the dead-letter stream");
                } else {
                    tracing::warn!(stream = %self.stream, entry = %entry.id, deliveries, error = %cause, "an event could not be handled; it will be delivered again");
                }
            }
        }
        Ok(())
    }

    async fn ack(&self, id: &str) -> Result<(), EventStreamError> {
        let mut connection = self.connection.clone();
        redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// How often the group has delivered entry `id` (1 when it is no longer pending).
    async fn deliveries(&self, id: &str) -> Result<usize, EventStreamError> {
        let mut connection = self.connection.clone();
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(&mut connection)
            .await?;
        Ok(reply
            .ids
            .first()
            .map_or(1, |pending| pending.times_delivered))
    }

    /// Copies the entry to the dead-letter stream with why and how often it failed, and
    /// acknowledges it, atomically.
    async fn dead_letter(
        &self,
        entry: &StreamId,
        deliveries: usize,
        cause: &str,
    ) -> Result<(), EventStreamError> {
        let mut fields: Vec<(String, String)> = entry
            .map
            .iter()
            .map(|(field, value)| {
                let value = redis::from_redis_value_ref::<String>(value).unwrap_or_default();
                (field.clone(), value)
            })
            .collect();
        fields.sort();
        fields.extend([
            ("source_entry".to_owned(), entry.id.clone()),
            ("group".to_owned(), self.group.clone()),
            ("deliveries".to_owned(), deliveries.to_string()),
            ("error".to_owned(), cause.to_owned()),
        ]);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.dead_letters)
            .arg("*")
            .arg(&fields)
            .ignore()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore();
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }

    /// Exports the group's lag and pending count.
    async fn measure(&self) -> Result<(), EventStreamError> {
        let mut connection = self.connection.clone();
        let reply: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut connection)
            .await?;
        if let Some(group) = reply.groups.iter().find(|g| g.name == self.group) {
            let labels = [
                ("stream", self.stream.clone()),
                ("group", self.group.clone()),
            ];
            metrics::gauge!("gantry_events_lag", &labels).set(group.lag.unwrap_or(0) as f64);
            metrics::gauge!("gantry_events_pending", &labels).set(group.pending as f64);
        }
        Ok(())
    }
}

/// The event an entry carries, when it has every field.
fn event_of(entry: &StreamId) -> Option<Event> {
    let field = |name: &str| -> Option<String> { entry.get::<String>(name) };
    Some(Event {
        id: field("id")?,
        topic: field("topic")?,
        payload: field("payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_after_their_producer_under_the_prefix() {
        let settings = StreamSettings::new("redis://127.0.0.1", "gantry:");
        assert_eq!(settings.stream("users"), "gantry:events:users");
        assert_eq!(settings.dead_letters("users"), "gantry:events:users:dead");
    }
}
