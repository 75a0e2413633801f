//! Wiring events between separate subgraph processes (`GANTRY_EVENTS`): with `database`
//! the posts subgraph reads the users subgraph's outbox table in their shared database
//! (as `gantry serve` does, in process); with `redis` the users subgraph's relay sends
//! its outbox to Redis Streams and the posts subgraph reads them as a consumer group, so
//! each may have a database of its own.

use std::time::Duration;

use anyhow::Context;
use gantry_kit::events::{StreamConsumer, StreamPublisher, StreamSettings};
use gantry_kit::invalidation::Invalidations;
use gantry_kit::outbox::OutboxSignal;
use gantry_posts::events::AccountEvents;
use gantry_users::relay::OutboxRelay;
use sea_orm::DatabaseConnection;

use super::BackgroundTasks;
use crate::cli::{CommonArgs, EventTransport, SubgraphArgs};

/// The stream settings, when events travel through Redis.
pub fn stream_settings(args: &SubgraphArgs) -> anyhow::Result<Option<StreamSettings>> {
    if args.events.events != EventTransport::Redis {
        return Ok(None);
    }
    let url = args
        .redis
        .redis_url
        .as_deref()
        .context("GANTRY_EVENTS=redis needs REDIS_URL (the Redis the event streams live in)")?;
    let mut settings = StreamSettings::new(url, &args.redis.redis_prefix);
    let events = &args.events;
    if let Some(max) = events.events_max_deliveries {
        settings.max_deliveries = max.max(1);
    }
    if let Some(ms) = events.events_claim_idle_ms {
        settings.claim_idle = Duration::from_millis(ms.max(10));
    }
    if let Some(len) = events.events_max_len {
        settings.max_len = len.max(1);
    }
    Ok(Some(settings))
}

/// The users subgraph's relay from its outbox to the stream, started in `tasks`; the
/// returned bell is for [`gantry_users::UsersSubgraph::new`] to ring after each commit.
pub fn start_relay(
    common: &CommonArgs,
    settings: &StreamSettings,
    db: &DatabaseConnection,
    tasks: &mut BackgroundTasks,
) -> anyhow::Result<OutboxSignal> {
    let publisher = StreamPublisher::new(settings, gantry_users::relay::PRODUCER)
        .context("REDIS_URL is not usable for the event stream")?;
    let signal = OutboxSignal::default();
    let relay = OutboxRelay::new(
        db.clone(),
        publisher,
        common.posts().outbox_poll_interval,
        Some(signal.clone()),
    );
    tasks.spawn(|stop| relay.run(stop));
    Ok(signal)
}

/// The posts subgraph's consumer of account events from the stream, started in `tasks`.
pub fn start_account_consumer(
    settings: StreamSettings,
    db: &DatabaseConnection,
    invalidations: Invalidations,
    tasks: &mut BackgroundTasks,
) -> anyhow::Result<()> {
    let handler = AccountEvents::new(db.clone(), invalidations);
    let consumer = StreamConsumer::new(
        settings,
        gantry_posts::events::PRODUCER,
        gantry_posts::events::GROUP,
        handler,
    )
    .context("REDIS_URL is not usable for the event stream")?;
    tasks.spawn(|stop| consumer.run(stop));
    Ok(())
}
