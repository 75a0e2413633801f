//! Driving load. Open loop: request `i` is intended at `t0 + i / rate` whatever the server
//! does, and its latency runs from that intended time to the end of its response, so a
//! stalled server cannot hide its queue (as wrk2 and k6's constant-arrival-rate do); at most
//! `max_outstanding` requests are in flight, and one that cannot start is an error. Closed
//! loop: N connections each send back to back, for the maximum throughput.
//!
//! Requests intended during the warm-up are sent but not recorded. `/metrics` endpoints are
//! read and processes sampled at the edges of the measured window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::prometheus;
use crate::record::{CacheAnswer, Outcome, Recorder, RunReport};
use crate::scenario::{After, Request, Scenario};
use crate::watch::{self, ProcessUsage};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// A fixed arrival rate, in requests per second.
    Open { rate: f64 },
    /// N connections, each sending its next request when the last one is answered.
    Closed { connections: usize },
}

#[derive(Debug)]
pub struct LoadOptions {
    pub scenario: Arc<Scenario>,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop: the most requests in flight at once.
    pub max_outstanding: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_size: usize,
    pub request_timeout: Duration,
    /// Processes to sample, as (name, pid).
    pub watch: Vec<(String, u32)>,
    /// `/metrics` endpoints to read before and after, as (name, URL).
    pub metrics: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub seed: u64,
}

/// What every request task shares.
struct Shared {
    scenario: Arc<Scenario>,
    client: reqwest::Client,
    recorder: Mutex<Recorder>,
    window_start: Instant,
    window_end: Instant,
}

impl Shared {
    async fn run_one(&self, request: Request, intended: Instant) {
        let operation = request.operation;
        let (outcome, cache) = send(&self.client, request).await;
        let done = Instant::now();
        let mut recorder = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if (self.window_start..self.window_end).contains(&done) {
            recorder.completed_in_window += 1;
            if outcome == Outcome::Ok {
                recorder.ok_in_window += 1;
            }
        }
        if (self.window_start..self.window_end).contains(&intended) {
            recorder.record(operation, done - intended, &outcome, cache);
        }
    }
}

pub fn http_client(pool_size: usize, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool_size)
        // Under servers' keep-alive limits (Hive Router closes idle ones after 5 s), so a
        // pooled connection is not picked just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()?)
}

/// Runs the load and reports what the measured window saw.
pub async fn run(options: LoadOptions) -> anyhow::Result<RunReport> {
    let client = http_client(options.pool_size, options.request_timeout)?;
    options.scenario.setup(&client).await?;

    let t0 = Instant::now() + Duration::from_millis(100);
    let window_start = t0 + options.warmup;
    let window_end = window_start + options.duration;
    let shared = Arc::new(Shared {
        scenario: options.scenario,
        client,
        recorder: Mutex::new(Recorder::default()),
        window_start,
        window_end,
    });
    let observer = tokio::spawn(observe(
        options.watch,
        options.metrics,
        window_start,
        window_end,
    ));

    match options.mode {
        Mode::Open { rate } => {
            open_loop(&shared, rate, t0, options.max_outstanding, options.seed).await?;
        }
        Mode::Closed { connections } => closed_loop(&shared, connections, options.seed).await?,
    }
    let (processes, metrics_delta) = observer.await?;

    let scenario = shared.scenario.name.as_str().to_owned();
    let mut report = RunReport {
        scenario,
        warmup_secs: options.warmup.as_secs_f64(),
        duration_secs: options.duration.as_secs_f64(),
        labels: options.labels,
        processes,
        metrics_delta,
        ..RunReport::default()
    };
    match options.mode {
        Mode::Open { rate } => {
            report.mode = "open".into();
            report.target_rps = Some(rate);
        }
        Mode::Closed { connections } => {
            report.mode = "closed".into();
            report.connections = Some(connections);
        }
    }
    let recorder = shared.recorder.lock().unwrap_or_else(|e| e.into_inner());
    report.fill(&recorder, options.duration);
    Ok(report)
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    t0: Instant,
    max_outstanding: usize,
    seed: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let outstanding = Arc::new(Semaphore::new(max_outstanding));
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0u64.. {
        let intended = t0 + Duration::from_secs_f64(i as f64 / rate);
        if intended >= shared.window_end {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        } else if i % 32 == 0 {
            // Behind schedule: let the request tasks run now and then while catching up.
            tokio::task::yield_now().await;
        }
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            if (shared.window_start..shared.window_end).contains(&intended) {
                shared
                    .recorder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .not_started();
            }
            continue;
        };
        let request = shared.scenario.next(&mut rng);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.run_one(request, intended).await;
            drop(permit);
        });
    }
    // Every request has a timeout, so waiting for all permits ends.
    let all = u32::try_from(max_outstanding).unwrap_or(u32::MAX);
    let _drained = outstanding.acquire_many(all).await?;
    Ok(())
}

async fn closed_loop(shared: &Arc<Shared>, connections: usize, seed: u64) -> anyhow::Result<()> {
    anyhow::ensure!(connections > 0, "--connections must be positive");
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let shared = shared.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
            loop {
                let start = Instant::now();
                if start >= shared.window_end {
                    break;
                }
                let request = shared.scenario.next(&mut rng);
                shared.run_one(request, start).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    Ok(())
}

/// Reads `/metrics` and samples processes at the edges of the measured window.
async fn observe(
    processes: Vec<(String, u32)>,
    metrics: Vec<(String, String)>,
    window_start: Instant,
    window_end: Instant,
) -> (
    BTreeMap<String, ProcessUsage>,
    BTreeMap<String, prometheus::Samples>,
) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    tokio::time::sleep_until(window_start).await;
    let before = scrape_all(&client, &metrics).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut watched = processes;
    watched.push(("load-generator".into(), std::process::id()));
    let sampler = tokio::spawn(watch::watch(watched, stopped));
    tokio::time::sleep_until(window_end).await;
    let _ = stop.send(true);
    let usage = sampler.await.unwrap_or_default();
    let after = scrape_all(&client, &metrics).await;
    let deltas = metrics
        .iter()
        .filter_map(|(name, _)| {
            let (b, a) = (before.get(name)?, after.get(name)?);
            Some((name.clone(), prometheus::delta(b, a)))
        })
        .collect();
    (usage, deltas)
}

async fn scrape_all(
    client: &reqwest::Client,
    metrics: &[(String, String)],
) -> BTreeMap<String, prometheus::Samples> {
    let mut out = BTreeMap::new();
    for (name, url) in metrics {
        match prometheus::scrape(client, url).await {
            Ok(samples) => {
                out.insert(name.clone(), samples);
            }
            Err(err) => eprintln!("warning: reading {url}: {err:#}"),
        }
    }
    out
}

/// Sends one request and classifies how it ended.
async fn send(client: &reqwest::Client, request: Request) -> (Outcome, CacheAnswer) {
    let mut builder = client
        .request(request.method, request.url)
        .header(ACCEPT, "application/json");
    if let Some(auth) = request.authorization {
        builder = builder.header(AUTHORIZATION, auth);
    }
    if let Some(body) = request.body {
        builder = builder.header(CONTENT_TYPE, "application/json").body(body);
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(err) => return (transport_error(&err), CacheAnswer::Absent),
    };
    let status = response.status();
    let cache = match response.headers().get("x-cache").map(|v| v.as_bytes()) {
        Some(b"HIT") => CacheAnswer::Hit,
        Some(b"MISS") => CacheAnswer::Miss,
        _ => CacheAnswer::Absent,
    };
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => return (transport_error(&err), cache),
    };
    if !status.is_success() {
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let kind = format!("http_{}", status.as_u16());
        return (Outcome::Error { kind, detail }, cache);
    }
    if let Some(error) = graphql_error(&body) {
        return (error, cache);
    }
    if let After::StoreTokens { session, field } = request.after {
        let tokens = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            let payload = &v["data"][field];
            Some((
                payload["accessToken"].as_str()?.to_owned(),
                payload["refreshToken"].as_str()?.to_owned(),
            ))
        });
        if let Some((access, refresh)) = tokens {
            session.store(&access, &refresh);
        }
    }
    (Outcome::Ok, cache)
}

fn transport_error(err: &reqwest::Error) -> Outcome {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "transport"
    };
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    Outcome::Error {
        kind: kind.into(),
        detail,
    }
}

/// A GraphQL body with a top-level `errors` entry, as `graphql:<first extensions.code>`.
/// The bytes are searched first, so the common answer is never parsed.
fn graphql_error(body: &[u8]) -> Option<Outcome> {
    const KEY: &[u8] = b"\"errors\"";
    let mentions_key = body.windows(KEY.len()).enumerate().any(|(i, w)| {
        w == KEY
            && body[i + KEY.len()..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b':')
    });
    if !mentions_key {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let first = value.get("errors")?.as_array()?.first()?.clone();
    let kind = match first["extensions"]["code"].as_str() {
        Some(code) => format!("graphql:{code}"),
        None => "graphql".to_owned(),
    };
    let detail = first["message"].as_str().unwrap_or_default().to_owned();
    Some(Outcome::Error { kind, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_top_level_errors_key_is_an_error_named_by_its_code() {
        let body = br#"{"data":null,"errors":[{"message":"slow down","extensions":{"code":"RATE_LIMITED"}}]}"#;
        assert_eq!(
            graphql_error(body),
            Some(Outcome::Error {
                kind: "graphql:RATE_LIMITED".into(),
                detail: "slow down".into()
            })
        );
    }

    #[test]
    fn the_word_errors_inside_data_is_not_an_error() {
        let body = br#"{"data":{"post":{"body":"no \"errors\": here, and errors too"}}}"#;
        assert_eq!(graphql_error(body), None);
        assert_eq!(graphql_error(br#"{"data":{"x":1}}"#), None);
    }
}
