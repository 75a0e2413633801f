//! `GET /ready`: whether this process should get traffic. `200` when everything it needs
//! answers, `503` otherwise, with a JSON body naming each check and its status.
//!
//! - `supergraph`: a gateway has one loaded.
//! - `database`: it answers and takes writes (`ok`, `read-only` or `down`). A SQLite file
//!   this process may not write is opened read-only without an error, and every write then
//!   fails, so a ping alone is not enough. `gantry_database_up` at `/metrics` shows the
//!   last probe's answer.
//! - `subgraph:NAME`: a separate gateway's subgraphs answer at `/health`.
//! - `database_replica` (with `DATABASE_READ_URL`): `ok`, or `degraded` with the reason
//!   while the replica is down or lags past its bound; never a reason for `503`, since
//!   reads then go to the primary. The last measured lag is in `lag_seconds`.
//! - `redis`: `ok` or `degraded`, never a reason for `503`: without Redis requests still
//!   succeed, with the shared caches bypassed until it answers again.
//!
//! Probes come every few seconds, so a change of state is logged once (a warning naming
//! what failed, then a line when it is ready again), not every failed probe.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use gantry_gateway::Gateway;
use gantry_gateway::shared::SharedState;
use gantry_kit::reads::ReadRouting;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};

use crate::cli::SubgraphUrl;

/// What `/ready` checks in this process.
#[derive(Debug, Default)]
pub struct Readiness {
    gateway: Option<Arc<Gateway>>,
    database: Option<DatabaseConnection>,
    subgraph_health: Vec<(String, String)>,
    redis: Option<SharedState>,
    reads: Option<ReadRouting>,
    client: reqwest::Client,
    /// What failed at the last probe (empty: ready), to log changes only.
    last_failed: Mutex<Option<Vec<String>>>,
}

/// A subgraph's `/health` URL: the origin of its GraphQL URL.
pub fn health_url(graphql_url: &str) -> String {
    match reqwest::Url::parse(graphql_url).and_then(|url| url.join("/health")) {
        Ok(url) => url.to_string(),
        Err(_) => format!("{}/health", graphql_url.trim_end_matches('/')),
    }
}

impl Readiness {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            client,
            ..Self::default()
        }
    }

    /// Ready only with a supergraph loaded.
    pub fn with_gateway(mut self, gateway: Arc<Gateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Ready only while the database answers and takes writes.
    pub fn with_database(mut self, database: DatabaseConnection) -> Self {
        self.database = Some(database);
        self
    }

    /// Probes subgraphs with `client` (one trusting the subgraphs' CA).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Ready only while each subgraph's `/health` answers.
    pub fn with_subgraphs(mut self, subgraphs: &[SubgraphUrl]) -> Self {
        self.subgraph_health = subgraphs
            .iter()
            .map(|s| (s.name.clone(), health_url(&s.url)))
            .collect();
        self
    }

    /// Reports Redis as `ok` or `degraded`; `/ready` stays `200` either way.
    pub fn with_redis(mut self, redis: Option<SharedState>) -> Self {
        self.redis = redis;
        self
    }

    /// Reports the read replica, when `reads` has one; `/ready` stays `200` either way.
    pub fn with_reads(mut self, reads: ReadRouting) -> Self {
        self.reads = Some(reads);
        self
    }

    /// `GET /ready`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/ready", get(ready))
            .with_state(Arc::new(self))
    }

    async fn check(&self) -> (bool, Value) {
        let mut failed = Vec::new();
        let mut checks = Map::new();
        if let Some(gateway) = &self.gateway {
            let subgraphs = gateway.supergraph().subgraph_urls().len();
            checks.insert(
                "supergraph".into(),
                json!({ "status": "ok", "subgraphs": subgraphs }),
            );
        }
        if let Some(db) = &self.database {
            let status = match gantry_kit::db::check_writable(db).await {
                Ok(()) => "ok",
                Err(err) => {
                    let read_only =
                        gantry_kit::db::sqlite_code(&err) == Some(gantry_kit::db::SQLITE_READONLY);
                    let status = if read_only { "read-only" } else { "down" };
                    failed.push(format!(
                        "database {status}: {}",
                        gantry_kit::db::describe(&err)
                    ));
                    status
                }
            };
            metrics::gauge!("gantry_database_up").set(if status == "ok" { 1.0 } else { 0.0 });
            checks.insert("database".into(), json!({ "status": status }));
        }
        for (name, url) in &self.subgraph_health {
            let up = matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success());
            if !up {
                failed.push(format!("subgraph {name} does not answer at {url}"));
            }
            checks.insert(
                format!("subgraph:{name}"),
                json!({ "status": if up { "ok" } else { "down" } }),
            );
        }
        if let Some(redis) = &self.redis {
            let up = redis.health().await;
            metrics::gauge!("gantry_redis_up").set(if up { 1.0 } else { 0.0 });
            checks.insert(
                "redis".into(),
                json!({ "status": if up { "ok" } else { "degraded" } }),
            );
        }
        if let Some(replica) = self.reads.as_ref().and_then(ReadRouting::replica_status) {
            let mut check = json!({
                "status": if replica.usable { "ok" } else { "degraded" },
                "lag_seconds": replica.lag.as_secs_f64(),
            });
            if let Some(reason) = replica.skipped_because {
                check["reason"] = Value::String(reason);
            }
            checks.insert("database_replica".into(), check);
        }
        let ready = failed.is_empty();
        self.log_change(failed);
        (
            ready,
            json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks }),
        )
    }

    fn log_change(&self, failed: Vec<String>) {
        let mut last = self
            .last_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_ref() == Some(&failed) {
            return;
        }
        if failed.is_empty() {
            if last.is_some() {
                tracing::info!("ready again");
            }
        } else {
            tracing::warn!(failed = ?failed, "not ready");
        }
        *last = Some(failed);
    }
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let (ready, body) = readiness.check().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subgraphs_health_is_at_the_root_of_its_origin() {
        assert_eq!(
            health_url("http://users:4001/graphql"),
            "http://users:4001/health"
        );
        assert_eq!(
            health_url("https://api.example.com/users/graphql"),
            "https://api.example.com/health"
        );
    }
}
