//! The supergraph runtime: what the gateway derives from one supergraph — the API schema
//! and the planner (in [`Supergraph`]) — and the caches of what was worked out against it:
//! the operations prepared, per (text, operation name, override labels), refusals included,
//! so a hostile document sent again is refused by one lookup; and the plans, per normalized
//! operation, so texts that differ only in spelling share one plan, planned once even
//! when they arrive together.
//!
//! A document not prepared before is prepared off the async workers: on a blocking thread,
//! once a turn on the preparation pool is free (as many turns as cores, shared by every
//! runtime of the gateway), within the time budget, and only once for every request that
//! asks for it meanwhile. When the request that runs it goes away (its client hung up),
//! the preparation is cancelled; a request still waiting for the same document then runs
//! it again. While preparations run, cache hits, `/health` and everything else on the
//! async workers go on.

use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hive_router_query_planner::utils::cancellation::CancellationToken;
use tokio::sync::Semaphore;
use xxhash_rust::xxh3::Xxh3;

use crate::auth::Identity;
use crate::authorization::AuthorizationSettings;
use crate::authorization::operation::{Denied, OperationAuthorization};
use crate::graphql::GraphQLError;
use crate::override_labels::ActiveLabels;
use crate::plan::{PlanCache, PlanError, plan_operation};
use crate::prepare::{PrepareError, PreparedOperation, Preparer};
use crate::supergraph::Supergraph;
use crate::telemetry::{self, Lookup};

/// Bytes the prepared-operation cache may hold, counting each entry by its text: bounded
/// by size, so clients sending large documents cannot grow it with them.
const PREPARED_BYTES: u64 = 64 * 1024 * 1024;

/// A document's preparation, as remembered: its text and name (to tell hash collisions
/// apart) and the outcome.
#[derive(Debug)]
struct Prepared {
    text: Box<str>,
    operation_name: Option<Box<str>>,
    labels: ActiveLabels,
    outcome: Result<Arc<PreparedOperation>, PrepareError>,
}

impl Prepared {
    fn is_for(&self, text: &str, operation_name: Option<&str>, labels: &ActiveLabels) -> bool {
        *self.text == *text
            && self.operation_name.as_deref() == operation_name
            && self.labels.plans_like(labels)
    }

    fn weight(&self) -> u32 {
        // The syntax tree and plan take a few times the text.
        let outcome = match &self.outcome {
            Ok(_) => self.text.len() * 3,
            Err(error) => error.weight(),
        };
        u32::try_from(self.text.len() + outcome + 512).unwrap_or(u32::MAX)
    }
}

/// One supergraph and the operations prepared against it.
pub struct SupergraphRuntime {
    supergraph: Arc<Supergraph>,
    preparer: Arc<Preparer>,
    pool: Arc<Semaphore>,
    prepared: moka::future::Cache<u64, Arc<Prepared>>,
    plans: Arc<PlanCache>,
    /// Preparations started (cache misses that ran), for metrics and tests.
    preparations: Arc<AtomicU64>,
}

impl std::fmt::Debug for SupergraphRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupergraphRuntime")
            .field("supergraph", &self.supergraph)
            .field("prepared", &self.prepared.entry_count())
            .finish_non_exhaustive()
    }
}

/// Cancels the preparation it guards when dropped: by the request that runs it going away,
/// or after the preparation ended (then it changes nothing).
struct CancelOnDrop(Arc<CancellationToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl SupergraphRuntime {
    /// `pool` holds the preparation turns, shared by every runtime of one gateway.
    pub fn new(supergraph: Supergraph, preparer: Arc<Preparer>, pool: Arc<Semaphore>) -> Self {
        let plans = Arc::new(PlanCache::new(supergraph.options().plan_cache_capacity));
        Self {
            supergraph: Arc::new(supergraph),
            plans,
            preparer,
            pool,
            prepared: moka::future::Cache::builder()
                .weigher(|_, prepared: &Arc<Prepared>| prepared.weight())
                .max_capacity(PREPARED_BYTES)
                .build(),
            preparations: Arc::default(),
        }
    }

    /// How many preparations ran (each document once, unless it was evicted, ran out of
    /// time or lost its clients).
    pub fn preparations(&self) -> u64 {
        self.preparations.load(Ordering::Relaxed)
    }

    pub fn supergraph(&self) -> &Arc<Supergraph> {
        &self.supergraph
    }

    pub fn preparer(&self) -> &Preparer {
        &self.preparer
    }

    /// The plans made against this supergraph (their counters feed tests and metrics).
    pub fn plan_cache(&self) -> &PlanCache {
        &self.plans
    }

    /// The prepared operation for `text` and `operation_name`, or why there is none:
    /// from the cache, or prepared now (once for every concurrent request asking). No
    /// override label is active.
    pub async fn prepare(
        &self,
        text: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedOperation>, PrepareError> {
        self.prepare_for(text, operation_name, &ActiveLabels::default())
            .await
    }

    /// [`Self::prepare`], planned for the override labels `labels` (one cache entry per
    /// label set).
    pub async fn prepare_for(
        &self,
        text: &str,
        operation_name: Option<&str>,
        labels: &ActiveLabels,
    ) -> Result<Arc<PreparedOperation>, PrepareError> {
        let key = cache_key(text, operation_name, labels);
        if let Some(prepared) = self.prepared.get(&key).await
            && prepared.is_for(text, operation_name, labels)
        {
            telemetry::lookup(Lookup::Validation, true);
            return prepared.outcome.clone();
        }
        telemetry::lookup(Lookup::Validation, false);
        let init = self.prepare_now(text.into(), operation_name.map(Into::into), labels);
        match self.prepared.entry(key).or_try_insert_with(init).await {
            Ok(entry) => {
                let prepared = entry.into_value();
                if prepared.is_for(text, operation_name, labels) {
                    return prepared.outcome.clone();
                }
                // Another text with the same hash holds the slot: prepare this one apart.
                let own = self
                    .prepare_now(text.into(), operation_name.map(Into::into), labels)
                    .await?;
                own.outcome.clone()
            }
            Err(error) => Err((*error).clone()),
        }
    }

    /// Prepares on the blocking pool, within the budget. `Err` only for outcomes not to
    /// remember (out of time, or cancelled).
    fn prepare_now(
        &self,
        text: Box<str>,
        operation_name: Option<Box<str>>,
        labels: &ActiveLabels,
    ) -> impl Future<Output = Result<Arc<Prepared>, PrepareError>> + Send + 'static {
        let labels = labels.clone();
        let supergraph = self.supergraph.clone();
        let plans = self.plans.clone();
        let preparer = self.preparer.clone();
        let pool = self.pool.clone();
        let preparations = self.preparations.clone();
        // Created here, in the request's span, so the blocking thread's work joins its trace.
        let span = tracing::info_span!("prepare");
        async move {
            let turn = pool
                .acquire_owned()
                .await
                .map_err(|_| PrepareError::Cancelled)?;
            preparations.fetch_add(1, Ordering::Relaxed);
            let budget = preparer.limits().preparation_budget();
            let cancel = Arc::new(CancellationToken::with_timeout(budget));
            let _cancel_on_drop = CancelOnDrop(cancel.clone());
            let worker_preparer = preparer.clone();
            let task = tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let _span = span.enter();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    worker_preparer.prepare_for(
                        &supergraph,
                        &plans,
                        &text,
                        operation_name.as_deref(),
                        &labels,
                        &cancel,
                    )
                }))
                .unwrap_or_else(|_| {
                    // A panic in a library stage: remembered like any other outcome, so
                    // the same document does not run into it again.
                    Err(PrepareError::Planning(
                        "preparing the operation panicked".into(),
                    ))
                })
                .map(Arc::new);
                Prepared {
                    text,
                    operation_name,
                    labels,
                    outcome,
                }
            });
            let prepared = match tokio::time::timeout(budget, task).await {
                Ok(Ok(prepared)) => prepared,
                Ok(Err(error)) => {
                    return Err(PrepareError::Planning(error.to_string()));
                }
                Err(_elapsed) => {
                    return Err(PrepareError::TimedOut {
                        budget_ms: preparer.limits().preparation_budget_ms,
                    });
                }
            };
            match &prepared.outcome {
                Err(error) if error.is_transient() => Err(error.clone()),
                _ => Ok(Arc::new(prepared)),
            }
        }
    }
}

/// What the caller may run of a prepared operation.
#[derive(Debug)]
pub enum Authorized {
    /// All of it.
    Whole,
    /// All but some fields: the filtered plan, and an error per removed field.
    Partly(Arc<Denied>),
    /// None of it (`reject_unauthorized`): the errors to answer with.
    Refused(Vec<GraphQLError>),
}

impl SupergraphRuntime {
    /// Checks the fields of `prepared` that have requirements against `identity`; when
    /// some are denied, the operation without them, planned off the async workers (once
    /// per set of denied fields; `prepared` is already one per set of override labels,
    /// and the filtered plan is planned for its labels).
    pub async fn authorize(
        &self,
        prepared: &Arc<PreparedOperation>,
        identity: &Identity,
        settings: &AuthorizationSettings,
    ) -> Result<Authorized, PrepareError> {
        let authorization = &prepared.authorization;
        if authorization.is_unrestricted() {
            return Ok(Authorized::Whole);
        }
        let denied = authorization.denied(identity, settings);
        if denied.is_empty() {
            return Ok(Authorized::Whole);
        }
        if settings.reject_unauthorized {
            return Ok(Authorized::Refused(authorization.errors(&denied)));
        }
        if let Some(filtered) = authorization.remembered(&denied) {
            return Ok(Authorized::Partly(filtered));
        }
        let supergraph = self.supergraph.clone();
        let plans = self.plans.clone();
        let operation = prepared.clone();
        let budget = self.preparer.limits().preparation_budget();
        let budget_ms = self.preparer.limits().preparation_budget_ms;
        let turn = self
            .pool
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PrepareError::Cancelled)?;
        let chosen = denied.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let cancel = CancellationToken::with_timeout(budget);
            let filtered = operation.authorization.filter(
                supergraph.api_schema(),
                operation.document(),
                &chosen,
            );
            plan_operation(
                supergraph.planner(),
                &plans,
                &filtered,
                operation.operation_name.as_deref(),
                &operation.override_labels,
                &cancel,
            )
        })
        .await
        .map_err(|error| PrepareError::Planning(error.to_string()))?
        .map_err(|error| match error {
            PlanError::Cancelled => PrepareError::TimedOut { budget_ms },
            other => PrepareError::Planning(other.to_string()),
        })?;
        let filtered = Arc::new(Denied {
            plan: planned,
            errors: authorization.errors(&denied),
            fingerprint: OperationAuthorization::fingerprint(&denied),
        });
        authorization.remember(denied, filtered.clone());
        Ok(Authorized::Partly(filtered))
    }
}

/// The cache key of a text, operation name and override labels; entries keep all three to
/// tell collisions apart.
fn cache_key(text: &str, operation_name: Option<&str>, labels: &ActiveLabels) -> u64 {
    let mut hasher = Xxh3::new();
    text.hash(&mut hasher);
    operation_name.hash(&mut hasher);
    labels.key().hash(&mut hasher);
    hasher.finish()
}
