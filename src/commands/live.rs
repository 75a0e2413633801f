//! Wiring a subgraph's live events (the subscriptions' feed, see [`gantry_kit::live`]):
//! its relay from the live-event table, and where the relay sends them. With `REDIS_URL`
//! they go through the Redis pub/sub channel `{prefix}live:{subgraph}`, which this
//! process also listens to, so every replica's subscribers get every event; without, to
//! this process's subscribers alone.

use anyhow::Context;
use gantry_kit::live::LiveBus;
use gantry_kit::live::channel::RedisLive;
use gantry_kit::live::outbox::LiveRelay;
use gantry_kit::shared::RedisSettings;

use super::BackgroundTasks;

/// Starts the relay `relay` makes for the channel (or none), and the channel's listener
/// feeding `bus`, in `tasks`.
pub fn start(
    tasks: &mut BackgroundTasks,
    subgraph: &str,
    redis: Option<&RedisSettings>,
    bus: LiveBus,
    relay: impl FnOnce(Option<RedisLive>) -> LiveRelay,
) -> anyhow::Result<()> {
    let channel = redis
        .map(|settings| {
            RedisLive::new(settings, subgraph).with_context(|| {
                format!(
                    "REDIS_URL `{}` is not usable for live events",
                    gantry_kit::url::redact(&settings.url)
                )
            })
        })
        .transpose()?;
    if let Some(channel) = &channel {
        tracing::info!(
            subgraph,
            channel = channel.channel(),
            "live events travel through Redis pub/sub"
        );
        let listener = channel.clone();
        tasks.spawn(move |stop| listener.listen(bus, stop));
    }
    let relay = relay(channel);
    tasks.spawn(move |stop| relay.run(stop));
    Ok(())
}
