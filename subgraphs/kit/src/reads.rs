//! Where a read goes: the primary, or a streaming read replica (`DATABASE_READ_URL`).
//!
//! Public reads (pages, entities, counts) tolerate a replica's lag, so they go to the
//! replica and leave the primary to the writes. Three things send a read to the primary
//! instead:
//! - a request that writes (a mutation document): what it returns must show the write;
//! - a viewer who wrote within the last [`ReadSettings::read_your_writes`]: they expect to
//!   see what they just did, wherever their next request lands. The mark is kept in process
//!   and, with Redis configured, in Redis too, so every replica of the subgraph knows;
//! - a replica that is down or lags more than [`ReadSettings::max_lag`], as measured by a
//!   background check every [`ReadSettings::check_every`] (`/ready` reports it as degraded,
//!   `gantry_database_replica_up` is 0, and a warning names why, once per change).
//!
//! The choice is made once per request, by [`ReadRoutingExtension`], and handed to the
//! resolvers as a [`ReadChoice`]; they ask [`ReadRouting::connection`] for the pool. A read
//! that fails on the replica (one in flight when it died, before the next check skips it)
//! is run again on the primary.
//!
//! `gantry_database_reads_total{pool, reason}` counts the reads made outside write
//! transactions by where they went and why ([`ReadReason`]): the replica's share of reads
//! is its `pool="replica"` series over all of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Variables};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use uuid::Uuid;

use crate::shared::SharedState;
use crate::viewer::ViewerState;

/// How reads use a replica.
#[derive(Debug, Clone, Copy)]
pub struct ReadSettings {
    /// A replica further behind than this is skipped. Default 5 s.
    pub max_lag: Duration,
    /// How long after a write the writer's reads go to the primary. Default 5 s.
    pub read_your_writes: Duration,
    /// How often the replica's health and lag are measured. Default 1 s.
    pub check_every: Duration,
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self {
            max_lag: Duration::from_secs(5),
            read_your_writes: Duration::from_secs(5),
            check_every: Duration::from_secs(1),
        }
    }
}

/// Which pool a request reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Primary,
    Replica,
}

/// Why a read went where it went: the `reason` label of `gantry_database_reads_total`,
/// whose `pool` label says where. The replica's share of reads is
/// `pool="replica"` over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadReason {
    /// A read that tolerates the replica's lag, on the replica (`lag_tolerant`).
    LagTolerant,
    /// Part of a request that writes, by a viewer who wrote lately, or a read that always
    /// needs the latest data (sign-in, sessions, tokens, account changes): on the primary
    /// (`must_be_current`).
    MustBeCurrent,
    /// It could have gone to the replica, which the last check found down or lagging
    /// (`replica_skipped`).
    ReplicaSkipped,
    /// It failed on the replica and ran again on the primary (`replica_failed`).
    ReplicaFailed,
    /// No replica is configured (`no_replica`).
    NoReplica,
}

impl ReadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LagTolerant => "lag_tolerant",
            Self::MustBeCurrent => "must_be_current",
            Self::ReplicaSkipped => "replica_skipped",
            Self::ReplicaFailed => "replica_failed",
            Self::NoReplica => "no_replica",
        }
    }

    fn pool(self) -> &'static str {
        match self {
            Self::LagTolerant => "replica",
            _ => "primary",
        }
    }

    fn count(self) {
        metrics::counter!(
            "gantry_database_reads_total",
            "pool" => self.pool(),
            "reason" => self.as_str()
        )
        .increment(1);
    }
}

/// The primary and, when configured, a replica, with what decides between them. Cheap to
/// clone.
#[derive(Clone)]
pub struct ReadRouting {
    inner: Arc<Inner>,
}

struct Inner {
    primary: DatabaseConnection,
    replica: Option<Replica>,
    writers: RecentWriters,
    settings: ReadSettings,
}

struct Replica {
    db: DatabaseConnection,
    /// Set by the background check; false until its first answer.
    usable: AtomicBool,
    /// The last measured lag, in milliseconds.
    lag_ms: AtomicU64,
    /// Why it is skipped, for `/ready`.
    skipped_because: Mutex<Option<String>>,
}

impl std::fmt::Debug for ReadRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRouting")
            .field("replica", &self.inner.replica.is_some())
            .finish_non_exhaustive()
    }
}

/// What `/ready` says of the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub usable: bool,
    pub lag: Duration,
    pub skipped_because: Option<String>,
}

impl ReadRouting {
    /// Every read from `primary`: no replica configured.
    pub fn primary_only(primary: DatabaseConnection) -> Self {
        Self::new(primary, None, ReadSettings::default(), None)
    }

    /// Reads from `replica` where they may; `shared` carries the read-your-writes marks to
    /// the other processes.
    pub fn new(
        primary: DatabaseConnection,
        replica: Option<DatabaseConnection>,
        settings: ReadSettings,
        shared: Option<SharedState>,
    ) -> Self {
        let replica = replica.map(|db| Replica {
            db,
            usable: AtomicBool::new(false),
            lag_ms: AtomicU64::new(0),
            skipped_because: Mutex::new(Some("not checked yet".to_owned())),
        });
        Self {
            inner: Arc::new(Inner {
                primary,
                replica,
                writers: RecentWriters {
                    window: settings.read_your_writes,
                    local: Mutex::new(HashMap::new()),
                    shared,
                },
                settings,
            }),
        }
    }

    /// The pool writes (and reads that must see them) use.
    pub fn primary(&self) -> &DatabaseConnection {
        &self.inner.primary
    }

    /// The pool for a read the request was routed to `from`: the replica only while it is
    /// usable. Counted in `gantry_database_reads_total{pool, reason}` (see [`ReadReason`]).
    pub fn connection(&self, from: ReadFrom) -> &DatabaseConnection {
        let (db, reason) = match (&self.inner.replica, from) {
            (None, _) => (&self.inner.primary, ReadReason::NoReplica),
            (Some(replica), ReadFrom::Replica) if replica.usable.load(Ordering::Relaxed) => {
                (&replica.db, ReadReason::LagTolerant)
            }
            (Some(_), ReadFrom::Replica) => (&self.inner.primary, ReadReason::ReplicaSkipped),
            (Some(_), ReadFrom::Primary) => (&self.inner.primary, ReadReason::MustBeCurrent),
        };
        reason.count();
        db
    }

    /// Records a read that failed on the replica and is run again on the primary
    /// (`gantry_database_replica_fallbacks_total`, and a primary read for
    /// [`ReadReason::ReplicaFailed`]): a replica that died fails the reads in flight
    /// before the next check skips it, and those must not fail the request.
    pub fn replica_read_failed(&self) {
        metrics::counter!("gantry_database_replica_fallbacks_total").increment(1);
        ReadReason::ReplicaFailed.count();
        tracing::debug!("a read failed on the read replica; running it on the primary");
    }

    /// Where the reads of a request by `viewer` go: the primary when there is no replica
    /// or the viewer wrote lately.
    pub async fn choose(&self, viewer: Option<Uuid>) -> ReadFrom {
        if self.inner.replica.is_none() {
            return ReadFrom::Primary;
        }
        match viewer {
            Some(viewer) if self.inner.writers.wrote_lately(viewer).await => ReadFrom::Primary,
            _ => ReadFrom::Replica,
        }
    }

    /// Records that `viewer` just wrote, so their reads stay on the primary for a while.
    pub async fn wrote(&self, viewer: Uuid) {
        if self.inner.replica.is_some() {
            self.inner.writers.mark(viewer).await;
        }
    }

    /// The replica's state, when one is configured.
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        let replica = self.inner.replica.as_ref()?;
        Some(ReplicaStatus {
            usable: replica.usable.load(Ordering::Relaxed),
            lag: Duration::from_millis(replica.lag_ms.load(Ordering::Relaxed)),
            skipped_because: replica
                .skipped_because
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        })
    }

    /// Measures the replica every [`ReadSettings::check_every`] until `stop`; returns at
    /// once without one.
    pub async fn watch_replica(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(replica) = &self.inner.replica else {
            return;
        };
        let every = self.inner.settings.check_every;
        loop {
            let verdict =
                match tokio::time::timeout(every.max(Duration::from_secs(1)), lag(&replica.db))
                    .await
                {
                    Err(_) => Err("it did not answer the lag check in time".to_owned()),
                    Ok(Err(err)) => Err(format!("down: {}", crate::db::describe(&err))),
                    Ok(Ok(lag)) if lag > self.inner.settings.max_lag => Err(format!(
                        "lagging {:.1} s behind the primary (more than {:.1} s)",
                        lag.as_secs_f64(),
                        self.inner.settings.max_lag.as_secs_f64()
                    )),
                    Ok(Ok(lag)) => {
                        replica.lag_ms.store(
                            lag.as_millis().try_into().unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        metrics::gauge!("gantry_database_replica_lag_seconds")
                            .set(lag.as_secs_f64());
                        Ok(())
                    }
                };
            replica.record(verdict);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

impl Replica {
    /// Applies a check's verdict, logging a change of state once.
    fn record(&self, verdict: Result<(), String>) {
        let usable = verdict.is_ok();
        // The gauge first: whoever sees the new state (`/ready`) finds the gauge set.
        metrics::gauge!("gantry_database_replica_up").set(if usable { 1.0 } else { 0.0 });
        let was = self.usable.swap(usable, Ordering::Relaxed);
        let mut because = self
            .skipped_because
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match verdict {
            Ok(()) => {
                if !was {
                    tracing::info!("the read replica is in use again");
                }
                *because = None;
            }
            Err(reason) => {
                // Once per change: the lag in the reason changes at every check.
                let kind = |reason: &str| reason.split(' ').next().map(str::to_owned);
                if was || because.as_deref().map(kind) != Some(kind(&reason)) {
                    tracing::warn!(reason = %reason, "read replica skipped: reads go to the primary");
                }
                *because = Some(reason);
            }
        }
    }
}

/// How far the replica's replay is behind: zero when it has replayed all it received
/// (an idle primary sends nothing, which is no lag), else the age of the last replayed
/// transaction. A server that is not a standby has no lag.
async fn lag(db: &DatabaseConnection) -> Result<Duration, sea_orm::DbErr> {
    let sql = "SELECT (CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
               ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
               END)::float8 AS lag";
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    let seconds: f64 = match row {
        Some(row) => row.try_get("", "lag")?,
        None => 0.0,
    };
    Ok(Duration::from_secs_f64(seconds.max(0.0)))
}

/// Viewers who wrote within the window, in process and (when configured) in Redis.
struct RecentWriters {
    window: Duration,
    local: Mutex<HashMap<Uuid, Instant>>,
    shared: Option<SharedState>,
}

/// Past this many marks, expired ones are swept on the next write.
const SWEEP_ABOVE: usize = 10_000;

impl RecentWriters {
    async fn mark(&self, viewer: Uuid) {
        {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            if local.len() > SWEEP_ABOVE {
                let window = self.window;
                local.retain(|_, at| at.elapsed() < window);
            }
            local.insert(viewer, Instant::now());
        }
        if let Some(shared) = &self.shared {
            let millis = u64::try_from(self.window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let set = redis::cmd("SET")
                .arg(shared.key(&format!("wrote:{viewer}")))
                .arg(1)
                .arg("PX")
                .arg(millis)
                .to_owned();
            if let Err(err) = shared.query::<()>(&set).await {
                tracing::debug!(error = %err, "could not share a read-your-writes mark");
            }
        }
    }

    /// Whether `viewer` wrote within the window. When Redis does not answer, yes: a read
    /// from the primary is never wrong, only less spread.
    async fn wrote_lately(&self, viewer: Uuid) -> bool {
        let local = self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&viewer)
            .is_some_and(|at| at.elapsed() < self.window);
        if local {
            return true;
        }
        let Some(shared) = &self.shared else {
            return false;
        };
        let exists = redis::cmd("EXISTS")
            .arg(shared.key(&format!("wrote:{viewer}")))
            .to_owned();
        shared.query::<u64>(&exists).await.map_or(true, |n| n > 0)
    }
}

/// The request's read route, for resolvers and loaders: [`ReadFrom::Primary`] when no
/// [`ReadRoutingExtension`] ran.
#[derive(Debug, Clone, Default)]
pub struct ReadChoice(Arc<AtomicBool>);

impl ReadChoice {
    pub fn get(&self) -> ReadFrom {
        if self.0.load(Ordering::Relaxed) {
            ReadFrom::Replica
        } else {
            ReadFrom::Primary
        }
    }

    /// The route of the request `ctx` belongs to.
    pub fn of(ctx: &async_graphql::Context<'_>) -> ReadFrom {
        ctx.data_opt::<ReadChoice>()
            .map_or(ReadFrom::Primary, ReadChoice::get)
    }
}

/// Routes each request's reads (see the module docs) and marks its viewer as a writer
/// after a mutation.
pub struct ReadRoutingExtension(pub ReadRouting);

impl ExtensionFactory for ReadRoutingExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestRoute {
            routing: self.0.clone(),
            viewer: Mutex::new(None),
            choice: ReadChoice::default(),
            writes: AtomicBool::new(false),
        })
    }
}

struct RequestRoute {
    routing: ReadRouting,
    viewer: Mutex<Option<Uuid>>,
    choice: ReadChoice,
    writes: AtomicBool,
}

#[async_graphql::async_trait::async_trait]
impl Extension for RequestRoute {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let viewer = request
            .data
            .get(&std::any::TypeId::of::<ViewerState>())
            .and_then(|data| data.downcast_ref::<ViewerState>())
            .and_then(ViewerState::viewer)
            .map(|viewer| viewer.user_id);
        *self.viewer.lock().unwrap_or_else(PoisonError::into_inner) = viewer;
        let from = self.routing.choose(viewer).await;
        self.choice
            .0
            .store(from == ReadFrom::Replica, Ordering::Relaxed);
        next.run(ctx, request.data(self.choice.clone())).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let writes = document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty == OperationType::Mutation);
        if writes {
            self.writes.store(true, Ordering::Relaxed);
            self.choice.0.store(false, Ordering::Relaxed);
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        let viewer = *self.viewer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(viewer) = viewer
            && self.writes.load(Ordering::Relaxed)
        {
            self.routing.wrote(viewer).await;
        }
        response
    }
}
