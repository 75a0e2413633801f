//! `gantry-bench subscriptions`: what live updates cost through the gateway, over
//! `graphql-transport-ws` like the `graphql-ws` client.
//!
//! - **Idle subscriptions held** ([`idle`]): N subscriptions over C WebSocket connections,
//!   half to a few hot posts (identical subscriptions, which share one upstream) and half to
//!   distinct posts (one upstream each), alternating `commentAdded` and
//!   `postLikeCountChanged`; the processes' resident memory before, with all of them held,
//!   and after they are closed, and the upstream subscriptions they cost.
//! - **Fan-out** ([`fanout`]): S subscribers of one post's `commentAdded`, each on its own
//!   connection, and a writer adding comments to that post at a fixed rate; each comment's
//!   body names it, so every delivery is matched to its mutation: latency from the
//!   mutation's send to each subscriber's receipt, deliveries lost and duplicated.
//!
//! # Layout
//! - this file: the options, the report's JSON, and reading the gauges and `/proc`.
//! - [`client`]: the `graphql-transport-ws` client.
//! - [`idle`], [`fanout`]: the two measurements.
//! - [`markdown`]: the report's section.

pub mod client;
pub mod fanout;
pub mod idle;
pub mod markdown;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::prometheus::{self, Samples};
use crate::record::LatencySummary;
use crate::watch;

/// What to run, and against what.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    /// The gateway's GraphQL endpoint (`http://…/graphql`); WebSockets go to the same path.
    pub url: String,
    /// `/metrics` endpoints, as (name, URL): the gateway's has the unlabelled
    /// `gantry_subscriptions_active` and `gantry_subscription_upstreams_active`, a
    /// subgraph's `gantry_subscriptions_active{subgraph}`.
    pub metrics: Vec<(String, String)>,
    /// Processes whose memory and CPU are read, as (name, pid).
    pub watch: Vec<(String, u32)>,
    /// Post ids: the first `hot_posts` are the hot ones (the first also the fan-out's post),
    /// the rest distinct.
    pub posts: Vec<String>,
    pub idle: Option<IdleOptions>,
    pub fanout: Vec<FanoutOptions>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub connections: usize,
    pub per_connection: usize,
    /// Posts the shared half of the subscriptions go to.
    pub hot_posts: usize,
    /// How long to wait for every subscription to show in the gauge.
    pub open_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// A name for the report (`posts-only`, `cross-subgraph`).
    pub name: String,
    /// The selection of `commentAdded`, e.g. `id body`.
    pub selection: String,
    pub subscribers: usize,
    /// Comments per second.
    pub rate: f64,
    pub duration: Duration,
    /// How long after the last delivery (once every comment is answered) more are awaited
    /// before the missing ones count as lost.
    pub drain: Duration,
    /// The seeded account that writes the comments, and its password.
    pub writer: String,
    pub password: String,
}

/// The JSON `gantry-bench subscriptions` writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubscriptionsReport {
    pub labels: BTreeMap<String, String>,
    pub idle: Option<IdleReport>,
    pub fanout: Vec<FanoutReport>,
}

/// `VmRSS` and `VmHWM` of one process at one moment, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessMemory {
    pub before: Memory,
    /// With every subscription held.
    pub held: Memory,
    /// After every connection closed and the gauges came back down.
    pub after_close: Memory,
    /// (held − before) VmRSS over the subscriptions the gateway held, in bytes.
    pub bytes_per_subscription: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleReport {
    pub connections: usize,
    pub per_connection: usize,
    pub requested: usize,
    pub hot_posts: usize,
    /// Subscriptions to the hot posts (identical ones share an upstream).
    pub hot_subscriptions: usize,
    /// Subscriptions each to a post nobody else subscribes to.
    pub distinct_subscriptions: usize,
    /// Distinct (post, field) pairs: the upstreams sharing should come to.
    pub distinct_upstream_keys: usize,
    /// Connections that failed to open, and one sample reason.
    pub connect_failures: usize,
    /// `error` messages (a refused subscription), and one sample.
    pub refused: usize,
    pub sample_error: Option<String>,
    /// Seconds from the first connection to the gauge showing every subscription.
    pub open_secs: f64,
    /// The gateway's `gantry_subscriptions_active` with all held.
    pub gateway_active: f64,
    /// The gateway's `gantry_subscription_upstreams_active` with all held.
    pub upstreams_active: f64,
    /// The subgraphs' `gantry_subscriptions_active{subgraph}`, summed, with all held.
    pub subgraph_active: f64,
    /// The same three once every connection closed.
    pub gateway_active_after_close: f64,
    pub upstreams_active_after_close: f64,
    pub subgraph_active_after_close: f64,
    /// Seconds from closing the connections to the gauges reading zero (or the wait
    /// giving up).
    pub close_secs: f64,
    pub processes: BTreeMap<String, ProcessMemory>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutReport {
    pub name: String,
    pub query: String,
    pub post_id: String,
    pub subscribers: usize,
    pub rate: f64,
    pub duration_secs: f64,
    /// Comments sent, and those whose mutation answered with the comment.
    pub comments_sent: u64,
    pub comments_ok: u64,
    pub mutation_errors: u64,
    pub sample_mutation_error: Option<String>,
    /// comments_ok × subscribers.
    pub expected_deliveries: u64,
    pub delivered: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a comment a subscriber had already received.
    pub duplicates: u64,
    /// `next` messages with `errors` (e.g. a field another subgraph owns failed), or that
    /// named no comment of this run.
    pub event_errors: u64,
    pub sample_event_error: Option<String>,
    /// Subscriptions that ended (`error`, `complete`, closed) before the run did.
    pub ended_early: u64,
    /// From the instant before the mutation's HTTP request is written to the instant its
    /// `next` frame is read off each subscriber's socket.
    pub latency: LatencySummary,
    /// The mutation's own round trip (send to its response's end).
    pub mutation_latency: LatencySummary,
    /// Per comment, from its first subscriber's receipt to its last.
    pub spread: LatencySummary,
    /// Deliveries per second, from the first comment's send to the last receipt.
    pub delivered_per_sec: f64,
    /// The gateway's upstreams while the subscribers were held.
    pub upstreams_active: f64,
    /// Events the subgraphs skipped for a subscriber too slow to keep up, during the run.
    #[serde(default)]
    pub skipped_by_subgraphs: f64,
    /// CPU and peak memory of each process over the writing and the drain.
    pub processes: BTreeMap<String, watch::ProcessUsage>,
}

/// Runs what `options` asks and reports it.
pub async fn run(options: SubscriptionOptions) -> anyhow::Result<SubscriptionsReport> {
    if options.posts.is_empty() {
        bail!("no post ids given");
    }
    let mut report = SubscriptionsReport {
        labels: options.labels.clone(),
        ..SubscriptionsReport::default()
    };
    if let Some(idle) = &options.idle {
        report.idle = Some(idle::run(&options, idle).await?);
    }
    for fanout in &options.fanout {
        report.fanout.push(fanout::run(&options, fanout).await?);
    }
    Ok(report)
}

/// The gauges the benchmark waits on, summed over every `/metrics` endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    /// The gateway's client subscriptions (the unlabelled series).
    pub active: f64,
    pub upstreams: f64,
    /// The subgraphs' subscriptions (`{subgraph="…"}`).
    pub subgraph: f64,
}

impl Gauges {
    pub fn from_samples(samples: &Samples) -> Self {
        let mut gauges = Self::default();
        for (series, value) in samples {
            if series == "gantry_subscriptions_active" {
                gauges.active += value;
            } else if series.starts_with("gantry_subscriptions_active{") {
                gauges.subgraph += value;
            } else if series == "gantry_subscription_upstreams_active" {
                gauges.upstreams += value;
            }
        }
        gauges
    }
}

pub async fn gauges(client: &reqwest::Client, metrics: &[(String, String)]) -> Gauges {
    let mut total = Gauges::default();
    for (_, url) in metrics {
        if let Ok(samples) = prometheus::scrape(client, url).await {
            let g = Gauges::from_samples(&samples);
            total.active += g.active;
            total.upstreams += g.upstreams;
            total.subgraph += g.subgraph;
        }
    }
    total
}

/// Polls the gauges every 200 ms until `done` holds or `timeout` passes; the last reading.
pub async fn wait_for_gauges(
    client: &reqwest::Client,
    metrics: &[(String, String)],
    timeout: Duration,
    done: impl Fn(&Gauges) -> bool,
) -> (Gauges, bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = gauges(client, metrics).await;
        if done(&now) {
            return (now, true);
        }
        if tokio::time::Instant::now() >= deadline {
            return (now, false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn memory(processes: &[(String, u32)]) -> BTreeMap<String, Memory> {
    processes
        .iter()
        .map(|(name, pid)| {
            let (rss_kb, hwm_kb) = watch::memory_kb(*pid).unwrap_or((0, 0));
            (name.clone(), Memory { rss_kb, hwm_kb })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_gauges_are_told_from_the_subgraphs() {
        let samples = prometheus::parse(
            "gantry_subscriptions_active 10000\n\
             gantry_subscriptions_active{subgraph=\"posts\"} 5020\n\
             gantry_subscription_upstreams_active 5020\n\
             gantry_subscriptions_active_total 3\n",
        );
        assert_eq!(
            Gauges::from_samples(&samples),
            Gauges {
                active: 10000.0,
                upstreams: 5020.0,
                subgraph: 5020.0
            }
        );
    }
}
