//! Event fan-out: S subscribers of one post's `commentAdded`, each on a connection of its
//! own (a reader per browser tab), and one signed-in writer adding comments to that post
//! in open loop (comment `i` sent at `start + i / rate`, whatever the server does).
//!
//! Each comment's body is `<tag>:<i>`, so every `next` a subscriber reads is matched to the
//! mutation that caused it. The latency of a delivery runs from the instant before the
//! mutation's HTTP request is written to the instant its `next` frame is read off that
//! subscriber's socket (before the frame is parsed); both are read from one monotonic
//! clock in this process. Before measuring, warm-up comments (`<tag>:w<k>`, one every
//! 500 ms) are written until every subscriber has received one, so every subscription is
//! known to be live end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, Kind};
use super::{FanoutOptions, FanoutReport, SubscriptionOptions};
use crate::record::Latencies;

const ADD_COMMENT: &str = "mutation AddComment($postId: ID!, $body: String!) { addComment(postId: $postId, body: $body) { id } }";

/// Connections opening at once.
const OPENING_AT_ONCE: usize = 32;
/// The longest wait for deliveries after every comment is answered.
const DRAIN_AT_MOST: Duration = Duration::from_secs(90);
/// Not sent, or not answered.
const NEVER: u64 = u64::MAX;

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Receipts {
    /// (comment, nanoseconds since the clock's start) per measured delivery.
    deliveries: Vec<(u32, u64)>,
    event_errors: u64,
    sample_event_error: Option<String>,
    ended_early: bool,
}

/// What a `next` frame carries: a measured comment, a warm-up one, or neither.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Measured(u32),
    WarmUp,
    Foreign,
}

fn read_body(text: &str, tag: &str) -> Body {
    let Some(at) = text.find(tag) else {
        return Body::Foreign;
    };
    let rest = &text[at + tag.len()..];
    if rest.starts_with('w') {
        return Body::WarmUp;
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().map_or(Body::Foreign, Body::Measured)
}

struct Clock(Instant);

impl Clock {
    fn nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(NEVER - 1)
    }
}

pub async fn run(
    options: &SubscriptionOptions,
    fanout: &FanoutOptions,
) -> anyhow::Result<FanoutReport> {
    anyhow::ensure!(
        fanout.selection.split_whitespace().any(|f| f == "body"),
        "the selection must hold `body`: deliveries are matched by it"
    );
    let post = options.posts[0].clone();
    let http = crate::load::http_client(256, Duration::from_secs(30))?;
    let (token, _) =
        crate::prepare::login(&http, &options.url, &fanout.writer, &fanout.password).await?;
    let query = format!(
        "subscription CommentAdded($postId: ID!) {{ commentAdded(postId: $postId) {{ {} }} }}",
        fanout.selection
    );
    let tag = format!("{}-{}:", fanout.name, std::process::id());
    let total = (fanout.rate * fanout.duration.as_secs_f64()).round() as usize;
    let clock = Arc::new(Clock(Instant::now()));
    let ws_url = client::ws_url(&options.url)?;
    let baseline = super::gauges(&http, &options.metrics).await;

    eprintln!(
        "fan-out {}: {} subscribers of post {post}, {total} comments at {}/s",
        fanout.name, fanout.subscribers, fanout.rate
    );
    let warmed = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut subscribers = tokio::task::JoinSet::new();
    for s in 0..fanout.subscribers {
        let subscribe = client::subscribe(&s.to_string(), &query, json!({ "postId": post }));
        subscribers.spawn(subscriber(
            ws_url.clone(),
            subscribe,
            tag.clone(),
            clock.clone(),
            (warmed.clone(), delivered.clone()),
            opening.clone(),
            stopped.clone(),
        ));
    }
    let wanted = fanout.subscribers as f64;
    let (shown, all_shown) =
        super::wait_for_gauges(&http, &options.metrics, Duration::from_secs(180), |g| {
            g.active - baseline.active >= wanted
        })
        .await;
    anyhow::ensure!(
        all_shown,
        "only {} of {} subscriptions opened",
        shown.active - baseline.active,
        fanout.subscribers
    );

    let writer = Writer {
        http: http.clone(),
        url: options.url.clone(),
        token,
        post: post.clone(),
    };
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut k = 0;
    while warmed.load(Ordering::Acquire) < fanout.subscribers {
        anyhow::ensure!(
            Instant::now() < warm_deadline,
            "after 60 s of warm-up comments only {} of {} subscribers had received one",
            warmed.load(Ordering::Acquire),
            fanout.subscribers
        );
        writer
            .comment(&format!("{tag}w{k}"))
            .await
            .context("a warm-up comment")?;
        k += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let upstreams = super::gauges(&http, &options.metrics).await.upstreams - baseline.upstreams;
    let skipped_before = skipped(&http, &options.metrics).await;

    let (observed, observing) = watch::channel(false);
    let observer = tokio::spawn(crate::watch::watch(options.watch.clone(), observing));
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(NEVER)).collect());
    let answered: Arc<Vec<AtomicU64>> =
        Arc::new((0..total).map(|_| AtomicU64::new(NEVER)).collect());
    let ok: Arc<Vec<AtomicBool>> = Arc::new((0..total).map(|_| AtomicBool::new(false)).collect());
    let errors = Arc::new(std::sync::Mutex::new((0u64, None::<String>)));
    let writer = Arc::new(writer);
    let start = Instant::now() + Duration::from_millis(100);
    let mut mutations = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / fanout.rate)).await;
        let (writer, clock, tag) = (writer.clone(), clock.clone(), tag.clone());
        let (sent, answered, ok, errors) =
            (sent.clone(), answered.clone(), ok.clone(), errors.clone());
        mutations.spawn(async move {
            sent[i].store(clock.nanos(), Ordering::Release);
            let outcome = writer.comment(&format!("{tag}{i}")).await;
            answered[i].store(clock.nanos(), Ordering::Release);
            match outcome {
                Ok(()) => ok[i].store(true, Ordering::Release),
                Err(error) => {
                    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                    errors.0 += 1;
                    errors.1.get_or_insert_with(|| format!("{error:#}"));
                }
            }
        });
    }
    while mutations.join_next().await.is_some() {}
    let comments_ok = ok.iter().filter(|o| o.load(Ordering::Acquire)).count() as u64;
    let expected = comments_ok * fanout.subscribers as u64;
    // Deliveries still on their way are awaited as long as they keep arriving: lost means
    // none came for `drain`, not that the server was slow.
    // At most `DRAIN_AT_MOST`: a server that delivers at a trickle is reported as such.
    let mut progress = (delivered.load(Ordering::Acquire), Instant::now());
    let give_up = Instant::now() + DRAIN_AT_MOST;
    while progress.0 < expected && progress.1.elapsed() < fanout.drain && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = delivered.load(Ordering::Acquire);
        if now != progress.0 {
            progress = (now, Instant::now());
        }
    }
    let skipped_after = skipped(&http, &options.metrics).await;
    let _ = observed.send(true);
    let processes = observer.await?;
    let _ = stop.send(true);
    let mut all = Vec::new();
    while let Some(joined) = subscribers.join_next().await {
        all.push(joined?);
    }
    // Leave nothing behind for the next measurement.
    super::wait_for_gauges(&http, &options.metrics, Duration::from_secs(60), |g| {
        g.active <= baseline.active && g.upstreams <= baseline.upstreams
    })
    .await;

    let (mutation_errors, sample_mutation_error) = {
        let errors = errors.lock().unwrap_or_else(|e| e.into_inner());
        (errors.0, errors.1.clone())
    };
    let at = |v: &[AtomicU64], i: usize| v[i].load(Ordering::Acquire);
    let mut latency = Latencies::default();
    let mut mutation_latency = Latencies::default();
    for i in 0..total {
        if at(&answered[..], i) != NEVER {
            mutation_latency.record(Duration::from_nanos(
                at(&answered[..], i).saturating_sub(at(&sent[..], i)),
            ));
        }
    }
    let (mut first_receipt, mut last_receipt) = (vec![NEVER; total], vec![0u64; total]);
    let (mut delivered_ok, mut duplicates, mut event_errors, mut ended_early) = (0u64, 0, 0, 0);
    let mut sample_event_error = None;
    for receipts in &all {
        let mut seen = vec![false; total];
        for &(i, received) in &receipts.deliveries {
            let i = i as usize;
            if i >= total || !ok[i].load(Ordering::Acquire) {
                continue;
            }
            if std::mem::replace(&mut seen[i], true) {
                duplicates += 1;
                continue;
            }
            delivered_ok += 1;
            latency.record(Duration::from_nanos(
                received.saturating_sub(at(&sent[..], i)),
            ));
            first_receipt[i] = first_receipt[i].min(received);
            last_receipt[i] = last_receipt[i].max(received);
        }
        event_errors += receipts.event_errors;
        ended_early += u64::from(receipts.ended_early);
        if sample_event_error.is_none() {
            sample_event_error.clone_from(&receipts.sample_event_error);
        }
    }
    let mut spread = Latencies::default();
    for i in 0..total {
        if first_receipt[i] != NEVER {
            spread.record(Duration::from_nanos(last_receipt[i] - first_receipt[i]));
        }
    }
    let first_send = (0..total).map(|i| at(&sent[..], i)).min().unwrap_or(0);
    let last = last_receipt.iter().copied().max().unwrap_or(0);
    let span = last.saturating_sub(first_send) as f64 / 1e9;
    Ok(FanoutReport {
        name: fanout.name.clone(),
        query,
        post_id: post,
        subscribers: fanout.subscribers,
        rate: fanout.rate,
        duration_secs: fanout.duration.as_secs_f64(),
        comments_sent: total as u64,
        comments_ok,
        mutation_errors,
        sample_mutation_error,
        expected_deliveries: expected,
        delivered: delivered_ok,
        lost: expected - delivered_ok,
        duplicates,
        event_errors,
        sample_event_error,
        ended_early,
        latency: latency.summary(),
        mutation_latency: mutation_latency.summary(),
        spread: spread.summary(),
        delivered_per_sec: if span > 0.0 {
            delivered_ok as f64 / span
        } else {
            0.0
        },
        upstreams_active: upstreams,
        skipped_by_subgraphs: skipped_after - skipped_before,
        processes,
    })
}

/// Events the subgraphs skipped for subscribers too slow to keep up
/// (`gantry_live_events_skipped_total`), summed over every `/metrics` endpoint.
async fn skipped(http: &reqwest::Client, metrics: &[(String, String)]) -> f64 {
    let mut total = 0.0;
    for (_, url) in metrics {
        if let Ok(samples) = crate::prometheus::scrape(http, url).await {
            total += crate::prometheus::sum(&samples, "gantry_live_events_skipped_total");
        }
    }
    total
}

/// The signed-in account that writes the comments.
struct Writer {
    http: reqwest::Client,
    url: String,
    token: String,
    post: String,
}

impl Writer {
    async fn comment(&self, body: &str) -> anyhow::Result<()> {
        let answer: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({
                "query": ADD_COMMENT,
                "operationName": "AddComment",
                "variables": { "postId": self.post, "body": body },
            }))
            .send()
            .await?
            .json()
            .await?;
        if answer["data"]["addComment"]["id"].is_string() {
            Ok(())
        } else {
            anyhow::bail!("addComment answered {answer}")
        }
    }
}

/// One subscriber on its own connection, until told to stop.
async fn subscriber(
    ws_url: String,
    subscribe: Value,
    tag: String,
    clock: Arc<Clock>,
    (warmed, delivered): (Arc<AtomicUsize>, Arc<AtomicU64>),
    opening: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Receipts {
    let mut receipts = Receipts::default();
    let opened = async {
        let _permit = opening.acquire().await?;
        let mut socket = client::connect(&ws_url, None).await?;
        client::send(&mut socket, &subscribe).await?;
        anyhow::Ok(socket)
    };
    let mut socket = match opened.await {
        Ok(socket) => socket,
        Err(error) => {
            receipts.ended_early = true;
            receipts.sample_event_error = Some(format!("could not subscribe: {error:#}"));
            return receipts;
        }
    };
    let mut warm = false;
    loop {
        tokio::select! {
            received = socket.next() => {
                let now = clock.nanos();
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        receipts.ended_early = true;
                        return receipts;
                    }
                };
                match client::kind(text.as_str()) {
                    Kind::Next => {
                        let failed = text.contains("\"errors\"");
                        if failed {
                            receipts.event_errors += 1;
                            receipts.sample_event_error.get_or_insert_with(|| text.to_string());
                        }
                        match read_body(text.as_str(), &tag) {
                            Body::Measured(i) => {
                                receipts.deliveries.push((i, now));
                                delivered.fetch_add(1, Ordering::AcqRel);
                            }
                            Body::WarmUp => {
                                if !std::mem::replace(&mut warm, true) {
                                    warmed.fetch_add(1, Ordering::AcqRel);
                                }
                            }
                            Body::Foreign if !failed => {
                                receipts.event_errors += 1;
                                receipts.sample_event_error.get_or_insert_with(|| text.to_string());
                            }
                            Body::Foreign => {}
                        }
                    }
                    Kind::Ping => {
                        let _ = client::send(&mut socket, &json!({ "type": "pong" })).await;
                    }
                    Kind::Error | Kind::Complete => {
                        receipts.ended_early = true;
                        receipts.sample_event_error.get_or_insert_with(|| text.to_string());
                    }
                    Kind::Other => {}
                }
            }
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                return receipts;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_matched_to_its_comment_by_the_body() {
        let next = |body: &str| {
            format!(
                r#"{{"id":"7","payload":{{"data":{{"commentAdded":{{"body":"{body}","id":"x"}}}}}},"type":"next"}}"#
            )
        };
        assert_eq!(
            read_body(&next("fo42a:1234"), "fo42a:"),
            Body::Measured(1234)
        );
        assert_eq!(read_body(&next("fo42a:w3"), "fo42a:"), Body::WarmUp);
        assert_eq!(read_body(&next("fo41a:12"), "fo42a:"), Body::Foreign);
    }
}
