//! Live events: what a subgraph's subscriptions deliver, from the write that caused them to
//! every subscriber in every replica.
//!
//! A write that others may want to see live records a [`LiveEvent`] in its own
//! transaction, in the subgraph's live-event table ([`outbox::record`]), so an event
//! exists exactly when its change committed: nothing is lost between the commit and the
//! event, and nothing is announced that rolled back. A [`outbox::LiveRelay`] beside the
//! subgraph takes committed, unpublished events (rung at once by the writer, and on a
//! poll for those a stopped replica left behind) and hands them on:
//! - in one process (`gantry serve`, or a subgraph without `REDIS_URL`), straight to the
//!   process's [`LiveBus`];
//! - with `REDIS_URL`, to the Redis pub/sub channel `{prefix}live:{subgraph}`
//!   ([`channel::RedisLive`]), which every replica of the subgraph listens to and copies
//!   onto its own bus. Every replica receives every event and delivers it to its own
//!   WebSocket subscribers (fan-out), unlike the consumer-group streams of
//!   [`crate::events`], where one replica handles each event.
//!
//! Redis pub/sub rather than PostgreSQL `LISTEN/NOTIFY`: it works with SQLite and behind
//! PgBouncer in transaction mode (where `LISTEN` does not), holds no database connection
//! per replica, and is the Redis the replicas already share.
//!
//! Delivery to a subscriber is live only: a subscriber receives what is published while
//! it is subscribed (and its replica reaches Redis), the way a client expects of a
//! subscription; it reads what it missed with a query. A relay that stops between
//! publishing and marking events published publishes them again on its next pass, so a
//! subscriber may, rarely, see an event twice.
//!
//! # Layout
//! - this file: [`LiveEvent`], [`LiveBus`] (the process's broadcast), [`LiveSettings`],
//!   and [`LiveDelivery`], what one subgraph holds of them.
//! - [`outbox`]: recording events in the writing transaction, and the relay.
//! - [`channel`]: the Redis pub/sub channel every replica publishes to and listens on.
//! - [`limits`]: subscriptions per connection and per process.

pub mod channel;
pub mod limits;
#[cfg(feature = "db")]
pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use limits::{ConnectionSubscriptions, SubscriptionLimits, SubscriptionPermit};

use crate::outbox::OutboxSignal;

/// One committed change, as a subscription filters and resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// UUIDv7, from the writing transaction.
    pub id: Uuid,
    /// What happened, e.g. `post.comment_added`.
    pub topic: String,
    /// The event as JSON text; its shape belongs to the topic.
    pub payload: String,
}

impl LiveEvent {
    /// The event as one JSON text (what travels on the Redis channel).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
        })
        .to_string()
    }

    /// Reads [`LiveEvent::to_json`]'s text; `None` for anything else.
    pub fn from_json(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(Self {
            id: Uuid::parse_str(value.get("id")?.as_str()?).ok()?,
            topic: value.get("topic")?.as_str()?.to_owned(),
            payload: value.get("payload")?.as_str()?.to_owned(),
        })
    }
}

/// How live events reach subscribers; every default documented.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Events a subscriber may fall behind by before it skips the oldest (counted in
    /// `gantry_live_events_skipped_total`). Default 1024.
    pub bus_capacity: usize,
    /// How often the relay looks for committed events no writer rang for (written by a
    /// replica that stopped before relaying them). Default 1 s.
    pub relay_poll_interval: Duration,
    /// How long published events stay in the table (for operators to look at) before the
    /// relay deletes them. Default 10 minutes.
    pub retention: Duration,
    /// Subscriptions one WebSocket connection may hold at once. Default 100.
    pub per_connection: usize,
    /// Subscriptions one subgraph process may hold at once, over all connections.
    /// Default 10,000.
    pub per_process: usize,
    /// How often a WebSocket connection is pinged (`{"type":"ping"}` of
    /// `graphql-transport-ws`), which keeps proxies from closing a quiet connection.
    /// Default 15 s.
    pub keepalive: Duration,
    /// How long a new WebSocket connection has to send `connection_init` before it is
    /// closed (4408). Default 10 s.
    pub connection_init_timeout: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            bus_capacity: 1024,
            relay_poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(600),
            per_connection: 100,
            per_process: 10_000,
            keepalive: Duration::from_secs(15),
            connection_init_timeout: Duration::from_secs(10),
        }
    }
}

/// The process's live events: what the relay (or the Redis channel) publishes, every
/// subscription of the process reads.
#[derive(Debug, Clone)]
pub struct LiveBus {
    sender: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self::new(LiveSettings::default().bus_capacity)
    }
}

impl LiveBus {
    /// A bus on which a subscriber may fall `capacity` events behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Hands `event` to every subscription of this process (none listening is fine).
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.sender.send(Arc::new(event));
    }

    /// Events of `topic` published from now on, for as long as the stream is held.
    pub fn topic(&self, topic: &'static str) -> impl Stream<Item = Arc<LiveEvent>> + Send + use<> {
        futures::stream::unfold(self.sender.subscribe(), move |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if event.topic == topic => return Some((event, receiver)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        metrics::counter!("gantry_live_events_skipped_total", "topic" => topic)
                            .increment(skipped);
                        tracing::warn!(topic, skipped, "a slow subscription skipped live events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// One subgraph's live events: the bus its subscriptions read, the limits they hold
/// permits of, and the bell its writes ring after committing an event.
#[derive(Debug, Clone)]
pub struct LiveDelivery {
    pub bus: LiveBus,
    pub limits: SubscriptionLimits,
    pub signal: OutboxSignal,
    pub settings: LiveSettings,
}

impl LiveDelivery {
    pub fn new(subgraph: &'static str, settings: LiveSettings) -> Self {
        Self {
            bus: LiveBus::new(settings.bus_capacity),
            limits: SubscriptionLimits::new(
                subgraph,
                settings.per_connection,
                settings.per_process,
            ),
            signal: OutboxSignal::default(),
            settings,
        }
    }

    /// The relay of `table` (on `db`) to this process's bus, or, given the Redis
    /// `channel`, to every replica (run [`channel::RedisLive::listen`] beside it, with
    /// this bus, so this process's subscribers get them too).
    #[cfg(feature = "db")]
    pub fn relay(
        &self,
        db: sea_orm::DatabaseConnection,
        table: &'static str,
        channel: Option<channel::RedisLive>,
    ) -> outbox::LiveRelay {
        let sink = match channel {
            Some(channel) => outbox::LiveSink::Redis(Box::new(channel)),
            None => outbox::LiveSink::Process(self.bus.clone()),
        };
        outbox::LiveRelay::new(db, table, sink, &self.settings, self.signal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn event(topic: &str) -> LiveEvent {
        LiveEvent {
            id: Uuid::now_v7(),
            topic: topic.into(),
            payload: r#"{"postId":"x"}"#.into(),
        }
    }

    #[test]
    fn an_event_reads_back_from_its_json() {
        let sent = event("post.comment_added");
        assert_eq!(LiveEvent::from_json(&sent.to_json()), Some(sent));
        assert_eq!(LiveEvent::from_json("{\"id\":1}"), None);
        assert_eq!(LiveEvent::from_json("not json"), None);
    }

    #[tokio::test]
    async fn a_subscription_gets_only_its_topic_and_only_what_came_after_it() {
        let bus = LiveBus::new(8);
        bus.publish(event("post.created"));
        let mut comments = Box::pin(bus.topic("post.comment_added"));
        bus.publish(event("post.created"));
        let wanted = event("post.comment_added");
        bus.publish(wanted.clone());
        let got = comments.next().await.expect("an event");
        assert_eq!(*got, wanted);
    }

    #[tokio::test]
    async fn a_subscription_that_falls_behind_skips_the_oldest_and_goes_on() {
        let bus = LiveBus::new(2);
        let mut stream = Box::pin(bus.topic("t"));
        let sent: Vec<LiveEvent> = (0..5).map(|_| event("t")).collect();
        for e in &sent {
            bus.publish(e.clone());
        }
        assert_eq!(*stream.next().await.expect("an event"), sent[3]);
        assert_eq!(*stream.next().await.expect("an event"), sent[4]);
    }
}
