//! Idle subscriptions held: how much memory and how many upstream subscriptions N open
//! subscriptions cost, and whether closing them gives everything back.
//!
//! Subscription `j` of `0..N` (connection `j / per_connection`): even `j` go to the hot
//! posts (`k = j / 2`: post `k % hot`, field `(k / hot) % 2`), so each hot post has many
//! identical subscriptions of each field; odd `j` each go to a post of their own (post
//! `hot + k`, field `k % 2`). Fields: `commentAdded` (with its author, which another
//! subgraph resolves) and `postLikeCountChanged`. Anonymous: identical subscriptions of
//! one caller share an upstream, so signed-in readers of one post would not share theirs.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, Kind};
use super::{IdleOptions, IdleReport, ProcessMemory, SubscriptionOptions};

pub const COMMENT_ADDED: &str = "subscription CommentAdded($postId: ID!) { commentAdded(postId: $postId) { id body createdAt author { id username } } }";
pub const LIKE_COUNT_CHANGED: &str = "subscription LikeCountChanged($postId: ID!) { postLikeCountChanged(postId: $postId) { id likeCount } }";

/// Connections opening at once (each a handshake and `connection_init`).
const OPENING_AT_ONCE: usize = 32;

/// Subscription `j`'s post (an index into the post ids) and whether it is `commentAdded`.
pub fn assignment(j: usize, hot: usize) -> (usize, bool) {
    let hot = hot.max(1);
    let k = j / 2;
    if j.is_multiple_of(2) {
        (k % hot, (k / hot).is_multiple_of(2))
    } else {
        (hot + k, k.is_multiple_of(2))
    }
}

#[derive(Debug, Default)]
struct Tally {
    connect_failures: usize,
    refused: usize,
    ended: usize,
    sample_error: Option<String>,
}

impl Tally {
    fn sample(&mut self, error: String) {
        if self.sample_error.is_none() {
            self.sample_error = Some(error.chars().take(300).collect());
        }
    }
}

pub async fn run(options: &SubscriptionOptions, idle: &IdleOptions) -> anyhow::Result<IdleReport> {
    let requested = idle.connections * idle.per_connection;
    let hot = idle.hot_posts.max(1);
    let needed = (0..requested)
        .map(|j| assignment(j, hot).0 + 1)
        .max()
        .unwrap_or(0);
    anyhow::ensure!(
        options.posts.len() >= needed,
        "{requested} subscriptions over {hot} hot posts need {needed} post ids; {} given",
        options.posts.len()
    );
    let keys: HashSet<(usize, bool)> = (0..requested).map(|j| assignment(j, hot)).collect();
    let hot_subscriptions = (0..requested).filter(|j| j.is_multiple_of(2)).count();

    let ws_url = client::ws_url(&options.url)?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let baseline = super::gauges(&http, &options.metrics).await;
    let before = super::memory(&options.watch);
    eprintln!(
        "idle: opening {requested} subscriptions over {} connections ({hot_subscriptions} to {hot} hot posts, {} upstream keys)",
        idle.connections,
        keys.len()
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let (stop, stopped) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..idle.connections {
        let messages: Vec<_> = (c * idle.per_connection..(c + 1) * idle.per_connection)
            .map(|j| {
                let (post, comments) = assignment(j, hot);
                let query = if comments {
                    COMMENT_ADDED
                } else {
                    LIKE_COUNT_CHANGED
                };
                client::subscribe(
                    &j.to_string(),
                    query,
                    json!({ "postId": options.posts[post] }),
                )
            })
            .collect();
        tasks.spawn(hold(
            ws_url.clone(),
            messages,
            opening.clone(),
            tally.clone(),
            stopped.clone(),
        ));
    }

    let lock = |tally: &Mutex<Tally>| {
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        (t.connect_failures, t.refused)
    };
    let (held_gauges, all_shown) =
        super::wait_for_gauges(&http, &options.metrics, idle.open_timeout, |g| {
            let (failed, refused) = lock(&tally);
            let expected = requested.saturating_sub(failed * idle.per_connection + refused);
            g.active - baseline.active >= expected as f64
        })
        .await;
    let open_secs = started.elapsed().as_secs_f64();
    if !all_shown {
        eprintln!(
            "idle: after {open_secs:.0} s the gauge shows {} of {requested}",
            held_gauges.active - baseline.active
        );
    }
    // Let upstreams finish opening before memory is read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held_gauges = super::gauges(&http, &options.metrics).await;
    let held = super::memory(&options.watch);
    eprintln!(
        "idle: {} held after {open_secs:.1} s, {} upstreams, subgraphs hold {}",
        held_gauges.active, held_gauges.upstreams, held_gauges.subgraph
    );

    let _ = stop.send(true);
    let closing = Instant::now();
    while tasks.join_next().await.is_some() {}
    let (after_gauges, _) =
        super::wait_for_gauges(&http, &options.metrics, Duration::from_secs(60), |g| {
            g.active <= baseline.active
                && g.upstreams <= baseline.upstreams
                && g.subgraph <= baseline.subgraph
        })
        .await;
    let close_secs = closing.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = super::memory(&options.watch);

    let gateway_held = (held_gauges.active - baseline.active).max(1.0);
    let processes: BTreeMap<String, ProcessMemory> = before
        .iter()
        .map(|(name, before)| {
            let held = held.get(name).copied().unwrap_or_default();
            let grew = held.rss_kb.saturating_sub(before.rss_kb) as f64 * 1024.0;
            let memory = ProcessMemory {
                before: *before,
                held,
                after_close: after_close.get(name).copied().unwrap_or_default(),
                bytes_per_subscription: grew / gateway_held,
            };
            (name.clone(), memory)
        })
        .collect();
    let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    Ok(IdleReport {
        connections: idle.connections,
        per_connection: idle.per_connection,
        requested,
        hot_posts: hot,
        hot_subscriptions,
        distinct_subscriptions: requested - hot_subscriptions,
        distinct_upstream_keys: keys.len(),
        connect_failures: tally.connect_failures,
        refused: tally.refused + tally.ended,
        sample_error: tally.sample_error.clone(),
        open_secs,
        gateway_active: held_gauges.active - baseline.active,
        upstreams_active: held_gauges.upstreams - baseline.upstreams,
        subgraph_active: held_gauges.subgraph - baseline.subgraph,
        gateway_active_after_close: after_gauges.active - baseline.active,
        upstreams_active_after_close: after_gauges.upstreams - baseline.upstreams,
        subgraph_active_after_close: after_gauges.subgraph - baseline.subgraph,
        close_secs,
        processes,
    })
}

/// One connection: opens, subscribes, then holds its subscriptions (answering pings)
/// until told to stop.
async fn hold(
    ws_url: String,
    messages: Vec<serde_json::Value>,
    opening: Arc<Semaphore>,
    tally: Arc<Mutex<Tally>>,
    mut stop: watch::Receiver<bool>,
) {
    let record = |f: &dyn Fn(&mut Tally)| f(&mut tally.lock().unwrap_or_else(|e| e.into_inner()));
    let mut socket = {
        let Ok(_permit) = opening.acquire().await else {
            return;
        };
        let mut socket = match client::connect(&ws_url, None).await {
            Ok(socket) => socket,
            Err(error) => {
                return record(&|t| {
                    t.connect_failures += 1;
                    t.sample(format!("{error:#}"));
                });
            }
        };
        for message in &messages {
            if let Err(error) = client::send(&mut socket, message).await {
                return record(&|t| {
                    t.connect_failures += 1;
                    t.sample(format!("{error:#}"));
                });
            }
        }
        socket
    };
    loop {
        tokio::select! {
            received = socket.next() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        return record(&|t| {
                            t.ended += messages.len();
                            t.sample("the server closed an idle connection".into());
                        });
                    }
                };
                match client::kind(text.as_str()) {
                    Kind::Ping => {
                        let _ = client::send(&mut socket, &json!({ "type": "pong" })).await;
                    }
                    Kind::Error => record(&|t| {
                        t.refused += 1;
                        t.sample(text.to_string());
                    }),
                    Kind::Complete => record(&|t| {
                        t.ended += 1;
                        t.sample(text.to_string());
                    }),
                    Kind::Next | Kind::Other => {}
                }
            }
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_subscriptions_share_hot_posts_and_half_have_a_post_each() {
        let hot = 10;
        let all: Vec<_> = (0..10_000).map(|j| assignment(j, hot)).collect();
        let shared: HashSet<_> = all.iter().step_by(2).collect();
        let distinct: HashSet<_> = all.iter().skip(1).step_by(2).collect();
        assert_eq!(shared.len(), 20, "10 hot posts × 2 fields");
        assert_eq!(distinct.len(), 5_000);
        assert!(distinct.iter().all(|(post, _)| *post >= hot));
        assert_eq!(all.iter().map(|(post, _)| post).max(), Some(&(hot + 4_999)));
    }
}
