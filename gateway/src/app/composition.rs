//! Fetching each subgraph's SDL (`_service { sdl }`) and composing them into a supergraph.
//! At start a gateway waits for subgraphs that do not answer yet, so the gateway and its
//! subgraphs may be started in any order, or all at once; then it composes again on SIGHUP
//! and at an interval ([`recompose`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::SubgraphUrl;
use crate::{Gateway, SubgraphSdl, Supergraph, SupergraphError, SupergraphOptions};

/// Why a subgraph's SDL could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CompositionError {
    #[error("subgraph `{name}` does not answer at {url}: {cause}")]
    Unreachable {
        name: String,
        url: String,
        cause: String,
    },
    #[error("subgraph `{name}` at {url} answered its SDL request with {answer}")]
    NoSdl {
        name: String,
        url: String,
        answer: String,
    },
    #[error("composing the subgraphs: {0}")]
    Compose(#[from] SupergraphError),
    #[error("{last} (still, after waiting {waited_secs} s)")]
    GaveUp {
        last: Box<CompositionError>,
        waited_secs: u64,
    },
}

impl CompositionError {
    /// Worth trying again: the subgraph may be starting.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Fetches `_service { sdl }` from each subgraph and composes them.
pub async fn compose_from(
    client: &reqwest::Client,
    subgraphs: &[SubgraphUrl],
) -> Result<Supergraph, CompositionError> {
    let mut sdls = Vec::with_capacity(subgraphs.len());
    for subgraph in subgraphs {
        sdls.push(SubgraphSdl {
            name: subgraph.name.clone(),
            url: subgraph.url.clone(),
            sdl: fetch_sdl(client, subgraph).await?,
        });
    }
    Ok(Supergraph::compose(&sdls, SupergraphOptions::default())?)
}

/// How often a waiting gateway asks again, and how often it says it is still waiting.
const RETRY_EVERY: Duration = Duration::from_millis(500);
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// [`compose_from`], asking again while a subgraph does not answer, for at most `wait`
/// (`0`: once). Logs which subgraph it waits for when it starts waiting and every few
/// seconds after. A subgraph that answers something other than its SDL, or SDLs that do
/// not compose, fail at once: waiting would not change them.
pub async fn compose_at_start(
    client: &reqwest::Client,
    subgraphs: &[SubgraphUrl],
    wait: Duration,
) -> Result<Supergraph, CompositionError> {
    let started = Instant::now();
    let mut last_report: Option<Instant> = None;
    loop {
        let err = match compose_from(client, subgraphs).await {
            Ok(supergraph) => {
                if last_report.is_some() {
                    tracing::info!(
                        waited_secs = started.elapsed().as_secs(),
                        "every subgraph answers"
                    );
                }
                return Ok(supergraph);
            }
            Err(err) if err.is_transient() && started.elapsed() < wait => err,
            Err(err) if err.is_transient() && !wait.is_zero() => {
                return Err(CompositionError::GaveUp {
                    last: Box::new(err),
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            Err(err) => return Err(err),
        };
        if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            tracing::info!(
                waited_secs = started.elapsed().as_secs(),
                wait_secs = wait.as_secs(),
                "waiting for the subgraphs: {err}"
            );
            last_report = Some(Instant::now());
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn fetch_sdl(
    client: &reqwest::Client,
    subgraph: &SubgraphUrl,
) -> Result<String, CompositionError> {
    let unreachable = |err: reqwest::Error| CompositionError::Unreachable {
        name: subgraph.name.clone(),
        url: subgraph.url.clone(),
        cause: http_cause(&err),
    };
    let response = client
        .post(&subgraph.url)
        .json(&json!({ "query": "{ _service { sdl } }" }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_server_error() {
        // A proxy in front of a subgraph that is still starting says 502 or 503.
        return Err(CompositionError::Unreachable {
            name: subgraph.name.clone(),
            url: subgraph.url.clone(),
            cause: format!("HTTP {status}"),
        });
    }
    let no_sdl = |answer: String| CompositionError::NoSdl {
        name: subgraph.name.clone(),
        url: subgraph.url.clone(),
        answer,
    };
    if !status.is_success() {
        return Err(no_sdl(format!("HTTP {status}")));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|err| no_sdl(format!("a body that is not JSON ({err})")))?;
    body["data"]["_service"]["sdl"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| no_sdl(body.to_string()))
}

/// The innermost cause of an HTTP client error, said plainly ("connection refused"
/// rather than "error sending request for url").
pub fn http_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".to_owned();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => io.to_string(),
            };
        }
        if cause.source().is_none() {
            return cause.to_string();
        }
        source = cause.source();
    }
    err.to_string()
}

/// Composes again on SIGHUP and every `every` (`None`: SIGHUP only); swaps in a changed
/// supergraph, keeps the last good one when composition fails.
pub(crate) async fn recompose(
    gateway: Arc<Gateway>,
    client: reqwest::Client,
    subgraphs: Vec<SubgraphUrl>,
    every: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let hangup_signal = async {
            #[cfg(unix)]
            if let Some(signal) = hangup.as_mut() {
                signal.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let tick = async {
            match every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending::<()>().await,
            }
        };
        let reason = tokio::select! {
            () = hangup_signal => "SIGHUP",
            () = tick => "interval",
            _ = stop.wait_for(|s| *s) => return,
        };
        match compose_from(&client, &subgraphs).await {
            Ok(supergraph) if supergraph.sdl() == gateway.supergraph().sdl() => {
                tracing::debug!(reason, "recomposed: the supergraph is unchanged");
            }
            Ok(supergraph) => {
                gateway.replace_supergraph(supergraph);
                tracing::info!(reason, "recomposed: serving the new supergraph");
            }
            Err(err) => {
                tracing::error!(reason, error = %err, "recomposition failed; keeping the last good supergraph");
            }
        }
    }
}
