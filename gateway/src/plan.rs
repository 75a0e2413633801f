//! Planning: normalize the client operation and turn it into a query plan with
//! hive-router-query-planner, through a bounded in-process plan cache (owned by the
//! supergraph runtime). Concurrent misses of one operation plan it once: the others wait
//! for that plan. Planning runs while an operation is prepared, under the preparation's
//! cancellation token (its time budget, and its client still waiting).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use graphql_tools::static_graphql::query::Document;
use hive_router_query_planner::ast::normalization::normalize_operation;
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::planner::Planner;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use hive_router_query_planner::utils::cancellation::CancellationToken;
use xxhash_rust::xxh3::Xxh3;

use crate::fetch::Plan;
use crate::override_labels::ActiveLabels;
use crate::telemetry::{self, Lookup};

/// How often a preparation whose plan another one was making asks again when that one
/// was cancelled (its client left, its budget ran out) while its own may go on.
const RETRIES_AFTER_ANOTHERS_CANCELLATION: usize = 3;

/// Planning never fails for a valid operation on a valid supergraph, so every variant but
/// `Cancelled` is an internal error: logged, and answered with a generic message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("planning was cancelled or ran out of time")]
    Cancelled,
    #[error("normalizing the operation failed: {0}")]
    Normalization(String),
    #[error("planning the operation failed: {0}")]
    Planning(String),
}

/// Cached plans, keyed by a hash of the normalized operation, its name and the active
/// override labels.
pub struct PlanCache {
    plans: moka::sync::Cache<u64, Arc<Plan>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("entries", &self.plans.entry_count())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl PlanCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            plans: moka::sync::Cache::new(capacity),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Lookups answered with a plan made before or meanwhile by another preparation.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Plans made: one per operation, however many preparations asked for it at once.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The plan under `key`, made by `plan` when there is none; concurrent calls for one
    /// key run `plan` once and share its outcome. When another call's planning was
    /// cancelled, this one plans again, unless `cancel` stopped it too.
    pub fn get_or_plan(
        &self,
        key: u64,
        cancel: &CancellationToken,
        plan: impl Fn() -> Result<QueryPlan, PlanError>,
    ) -> Result<Arc<Plan>, PlanError> {
        let mut tries = 0;
        loop {
            let mut planned = false;
            let outcome = self.plans.try_get_with(key, || {
                planned = true;
                self.misses.fetch_add(1, Ordering::Relaxed);
                plan().map(|plan| Arc::new(Plan::new(plan)))
            });
            if !planned {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            telemetry::lookup(Lookup::Plan, !planned);
            match outcome {
                Ok(plan) => return Ok(plan),
                Err(error) => match error.as_ref() {
                    PlanError::Cancelled
                        if !planned
                            && cancel.bail_if_cancelled().is_ok()
                            && tries < RETRIES_AFTER_ANOTHERS_CANCELLATION =>
                    {
                        tries += 1;
                    }
                    error => return Err(error.clone()),
                },
            }
        }
    }
}

/// Plans an operation of a validated document, through `cache`.
///
/// Root introspection fields (`__schema`, `__type`, `__typename`) are removed before
/// planning: the gateway answers them itself. An operation with only those gets an empty
/// plan (`node: None`). Fields under progressive override are planned to the subgraph
/// `labels` choose.
#[tracing::instrument(name = "plan", skip_all)]
pub fn plan_operation(
    planner: &Planner,
    cache: &PlanCache,
    document: &Document,
    operation_name: Option<&str>,
    labels: &ActiveLabels,
    cancel: &CancellationToken,
) -> Result<Arc<Plan>, PlanError> {
    let mut normalized = normalize_operation(&planner.supergraph, document, operation_name)
        .map_err(|error| PlanError::Normalization(error.to_string()))?;
    let operation = &mut normalized.operation;
    operation.selection_set.items.retain(|item| match item {
        SelectionItem::Field(field) => !field.name.starts_with("__"),
        _ => true,
    });
    let operation = &*operation;

    let key = {
        let mut hasher = Xxh3::new();
        operation.to_string().hash(&mut hasher);
        operation_name.hash(&mut hasher);
        labels.key().hash(&mut hasher);
        hasher.finish()
    };
    cache.get_or_plan(key, cancel, || {
        if operation.selection_set.items.is_empty() {
            return Ok(QueryPlan {
                kind: "QueryPlan",
                node: None,
            });
        }
        cancel
            .bail_if_cancelled()
            .map_err(|_| PlanError::Cancelled)?;
        planner
            .plan_from_normalized_operation(operation, labels.planner_context(), cancel)
            .map_err(|error| match cancel.bail_if_cancelled() {
                Err(_) => PlanError::Cancelled,
                Ok(()) => PlanError::Planning(error.to_string()),
            })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn empty_plan() -> QueryPlan {
        QueryPlan {
            kind: "QueryPlan",
            node: None,
        }
    }

    #[test]
    fn concurrent_misses_of_one_operation_plan_it_once() {
        const CALLERS: usize = 8;
        let cache = PlanCache::new(10);
        let planned = AtomicUsize::new(0);
        let start = Barrier::new(CALLERS);
        std::thread::scope(|scope| {
            for _ in 0..CALLERS {
                scope.spawn(|| {
                    start.wait();
                    cache.get_or_plan(7, &CancellationToken::new(), || {
                        planned.fetch_add(1, Ordering::SeqCst);
                        // Long enough for every caller to arrive while the plan is made.
                        std::thread::sleep(Duration::from_millis(100));
                        Ok(empty_plan())
                    })
                });
            }
        });
        assert_eq!(planned.load(Ordering::SeqCst), 1);
        assert_eq!((cache.misses(), cache.hits()), (1, CALLERS as u64 - 1));
    }

    #[test]
    fn a_caller_waiting_on_a_cancelled_planning_plans_itself() {
        let cache = PlanCache::new(10);
        let started = Barrier::new(2);
        let (cancelled, own) = std::thread::scope(|scope| {
            let cancelled = scope.spawn(|| {
                cache.get_or_plan(7, &CancellationToken::new(), || {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    Err(PlanError::Cancelled)
                })
            });
            started.wait();
            let own = cache.get_or_plan(7, &CancellationToken::new(), || Ok(empty_plan()));
            (cancelled.join().ok(), own)
        });
        assert!(matches!(cancelled, Some(Err(PlanError::Cancelled))));
        assert!(own.is_ok_and(|plan| plan.query_plan.node.is_none()));
    }
}
