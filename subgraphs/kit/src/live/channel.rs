//! The Redis pub/sub channel a subgraph's replicas share live events on:
//! `{prefix}live:{subgraph}`. The relay of whichever replica committed an event
//! `PUBLISH`es it; every replica `SUBSCRIBE`s and copies each message onto its own
//! [`LiveBus`]. A replica that loses Redis logs it once, reconnects every second, and
//! meanwhile its subscribers receive nothing (their subscriptions stay open).

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use super::{LiveBus, LiveEvent};
use crate::shared::RedisSettings;

/// How long connecting, publishing or a ping may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a listening connection is pinged, so a dead one is found and replaced.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Why the channel could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection to redis closed")]
    Closed,
}

/// One subgraph's live-event channel.
#[derive(Clone)]
pub struct RedisLive {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
}

impl std::fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLive")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

async fn within<T>(
    call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, ChannelError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| ChannelError::Timeout(CALL_TIMEOUT))?
        .map_err(ChannelError::from)
}

impl RedisLive {
    /// The channel of `subgraph` in the Redis `settings` name. Redis need not answer yet.
    pub fn new(settings: &RedisSettings, subgraph: &str) -> Result<Self, ChannelError> {
        let client = crate::shared::client(settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            publisher,
            channel: format!("{}live:{subgraph}", settings.key_prefix),
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes `events` in order, in one round trip.
    pub async fn publish(&self, events: &[LiveEvent]) -> Result<(), ChannelError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(event.to_json())
                .ignore();
        }
        let mut connection = self.publisher.clone();
        within(pipe.query_async::<()>(&mut connection)).await
    }

    /// Copies every message of the channel onto `bus` until `stop` turns true,
    /// reconnecting when Redis goes away.
    pub async fn listen(self, bus: LiveBus, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let outcome = tokio::select! {
                outcome = self.listen_once(&bus, &mut failing) => outcome,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            if let Err(err) = outcome
                && !failing
            {
                failing = true;
                tracing::warn!(channel = %self.channel, error = %err, "cannot listen for live events; subscribers get none until Redis answers (retrying every second)");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        tracing::info!(channel = %self.channel, "stopped listening for live events");
    }

    /// One connection's worth of listening: returns when it fails.
    async fn listen_once(&self, bus: &LiveBus, failing: &mut bool) -> Result<(), ChannelError> {
        let mut pubsub = within(self.client.get_async_pubsub()).await?;
        within(pubsub.subscribe(&self.channel)).await?;
        if std::mem::take(failing) {
            tracing::info!(channel = %self.channel, "listening for live events again");
        } else {
            tracing::info!(channel = %self.channel, "listening for live events");
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message.ok_or(ChannelError::Closed)?;
                    let event = message
                        .get_payload::<String>()
                        .ok()
                        .and_then(|text| LiveEvent::from_json(&text));
                    match event {
                        Some(event) => bus.publish(event),
                        None => tracing::warn!(channel = %self.channel, "skipped a message on the live-event channel that is not an event"),
                    }
                }
                _ = ping.tick() => {
                    within(sink.ping::<redis::Value>()).await?;
                }
            }
        }
    }
}
