//! `GET /ready`: whether this process should get traffic. `200` when everything it needs
//! answers, `503` otherwise, with a JSON body naming each check and its status.
//!
//! What is checked is a list of [`ReadinessCheck`]s the server was built with; each says
//! `ok`, or why not, and whether that keeps the process out of traffic:
//! - `supergraph`, `subgraph:NAME`: a gateway's (see `gantry-gateway`).
//! - `database`: it answers and takes writes (`ok`, `read-only` or `down`). A SQLite file
//!   this process may not write is opened read-only without an error, and every write then
//!   fails, so a ping alone is not enough. `gantry_database_up` at `/metrics` shows the
//!   last probe's answer. With the `db` feature: [`DatabaseCheck`].
//! - `database_replica` (with `DATABASE_READ_URL`): `ok`, or `degraded` with the reason
//!   while the replica is down or lags past its bound; never a reason for `503`, since
//!   reads then go to the primary. The last measured lag is in `lag_seconds`
//!   ([`ReplicaCheck`]).
//! - `redis`: `ok` or `degraded`, never a reason for `503`: without Redis requests still
//!   succeed, with the shared caches bypassed until it answers again ([`RedisCheck`]).
//!
//! Probes come every few seconds, so a change of state is logged once (a warning naming
//! what failed, then a line when it is ready again), not every failed probe.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::shared::SharedState;

/// One entry of `/ready`'s `checks`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The key in `checks` (`database`, `subgraph:users`, …).
    pub name: String,
    /// What `/ready` shows for it: at least `{"status": …}`.
    pub body: Value,
    /// Why the process is not ready, when this check keeps it out of traffic.
    pub failure: Option<String>,
}

impl CheckResult {
    /// A check that does not keep the process out of traffic, whatever its status.
    pub fn reported(name: impl Into<String>, body: Value) -> Self {
        Self {
            name: name.into(),
            body,
            failure: None,
        }
    }
}

/// The future a [`ReadinessCheck`] answers with.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Vec<CheckResult>> + Send + 'a>>;

/// Something `/ready` asks about at every probe.
pub trait ReadinessCheck: std::fmt::Debug + Send + Sync + 'static {
    /// The entries this check adds to `/ready` (a check may add several, one per subgraph).
    fn check(&self) -> CheckFuture<'_>;
}

/// What `/ready` checks in this process, in the order the checks were added.
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    /// What failed at the last probe (empty: ready), to log changes only.
    last_failed: Mutex<Option<Vec<String>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `check` after the ones already there.
    pub fn with(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Reports Redis as `ok` or `degraded`; `/ready` stays `200` either way.
    pub fn with_redis(self, redis: Option<SharedState>) -> Self {
        match redis {
            Some(redis) => self.with(Arc::new(RedisCheck(redis))),
            None => self,
        }
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
        for check in &self.checks {
            for result in check.check().await {
                failed.extend(result.failure);
                checks.insert(result.name, result.body);
            }
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

/// `redis`: `ok` or `degraded`; never a reason for `503`.
#[derive(Debug)]
pub struct RedisCheck(pub SharedState);

impl ReadinessCheck for RedisCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let up = self.0.health().await;
            metrics::gauge!("gantry_redis_up").set(if up { 1.0 } else { 0.0 });
            vec![CheckResult::reported(
                "redis",
                json!({ "status": if up { "ok" } else { "degraded" } }),
            )]
        })
    }
}

#[cfg(feature = "db")]
pub use self::database::{DatabaseCheck, ReplicaCheck};

#[cfg(feature = "db")]
mod database {
    use sea_orm::DatabaseConnection;
    use serde_json::{Value, json};

    use super::{CheckFuture, CheckResult, ReadinessCheck};
    use crate::db;
    use crate::reads::ReadRouting;

    /// `database`: answers and takes writes; `read-only` or `down` keep the process out.
    #[derive(Debug)]
    pub struct DatabaseCheck(pub DatabaseConnection);

    impl ReadinessCheck for DatabaseCheck {
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(async move {
                let (status, failure) = match db::check_writable(&self.0).await {
                    Ok(()) => ("ok", None),
                    Err(err) => {
                        let read_only = db::sqlite_code(&err) == Some(db::SQLITE_READONLY);
                        let status = if read_only { "read-only" } else { "down" };
                        (
                            status,
                            Some(format!("database {status}: {}", db::describe(&err))),
                        )
                    }
                };
                metrics::gauge!("gantry_database_up").set(if status == "ok" { 1.0 } else { 0.0 });
                vec![CheckResult {
                    name: "database".into(),
                    body: json!({ "status": status }),
                    failure,
                }]
            })
        }
    }

    /// `database_replica`, when the routing has a replica: `ok` or `degraded` (with the
    /// reason); never a reason for `503`.
    #[derive(Debug)]
    pub struct ReplicaCheck(pub ReadRouting);

    impl ReadinessCheck for ReplicaCheck {
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(async move {
                let Some(replica) = self.0.replica_status() else {
                    return Vec::new();
                };
                let mut body = json!({
                    "status": if replica.usable { "ok" } else { "degraded" },
                    "lag_seconds": replica.lag.as_secs_f64(),
                });
                if let Some(reason) = replica.skipped_because {
                    body["reason"] = Value::String(reason);
                }
                vec![CheckResult::reported("database_replica", body)]
            })
        }
    }
}
