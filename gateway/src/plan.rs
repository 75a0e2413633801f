//! Planning: normalize the client operation and turn it into a query plan with
//! hive-router-query-planner, through a bounded in-process cache owned by the supergraph.
//! Planning runs while an operation is prepared, under the preparation's cancellation
//! token (its time budget, and its client still waiting).

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

use crate::override_labels::ActiveLabels;
use crate::telemetry::{self, Lookup};

/// Planning never fails for a valid operation on a valid supergraph, so every variant but
/// `Cancelled` is an internal error: logged, and answered with a generic message.
#[derive(Debug, thiserror::Error)]
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
    plans: moka::sync::Cache<u64, Arc<QueryPlan>>,
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

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Plans an operation of a validated document, using the supergraph's plan cache.
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
) -> Result<Arc<QueryPlan>, PlanError> {
    let mut normalized = normalize_operation(&planner.supergraph, document, operation_name)
        .map_err(|error| PlanError::Normalization(error.to_string()))?;
    let operation = &mut normalized.operation;
    operation.selection_set.items.retain(|item| match item {
        SelectionItem::Field(field) => !field.name.starts_with("__"),
        _ => true,
    });

    let key = {
        let mut hasher = Xxh3::new();
        operation.to_string().hash(&mut hasher);
        operation_name.hash(&mut hasher);
        labels.key().hash(&mut hasher);
        hasher.finish()
    };
    if let Some(plan) = cache.plans.get(&key) {
        cache.hits.fetch_add(1, Ordering::Relaxed);
        telemetry::lookup(Lookup::Plan, true);
        return Ok(plan);
    }
    cache.misses.fetch_add(1, Ordering::Relaxed);
    telemetry::lookup(Lookup::Plan, false);

    let plan = if operation.selection_set.items.is_empty() {
        QueryPlan {
            kind: "QueryPlan",
            node: None,
        }
    } else {
        cancel
            .bail_if_cancelled()
            .map_err(|_| PlanError::Cancelled)?;
        planner
            .plan_from_normalized_operation(operation, labels.planner_context(), cancel)
            .map_err(|error| match cancel.bail_if_cancelled() {
                Err(_) => PlanError::Cancelled,
                Ok(()) => PlanError::Planning(error.to_string()),
            })?
    };
    let plan = Arc::new(plan);
    cache.plans.insert(key, plan.clone());
    Ok(plan)
}
