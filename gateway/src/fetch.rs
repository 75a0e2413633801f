//! Typed fetches: what each fetch of a query plan is, read from the plan's nodes — never
//! from the text of the subgraph operation. A fetch's kind comes from its node; its
//! `_entities` calls (one for a flattened entity fetch, one per alias for a batch fetch:
//! where the results are, which variable carries the representations, what the call
//! selects) are worked out once per plan, when it is made, and handed to every request of
//! the operation as a shared list.

use std::collections::HashMap;
use std::sync::Arc;

use hive_router_query_planner::ast::operation::SubgraphFetchOperation;
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::planner::plan_nodes::{
    BatchFetchNode, FetchNode, PlanNode, QueryPlan,
};
use hive_router_query_planner::state::supergraph_state::OperationKind as PlannedKind;

use crate::graphql::OperationKind;

/// One `_entities` call of an entity fetch, as its plan node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityCall {
    /// The response key of the call: `_entities`, or the alias of a batch's call (`_e0`).
    pub response_key: String,
    /// The variable holding the call's representations (`representations`, `__batch_reps_0`).
    pub representations_variable: String,
    /// What the call selects on each entity, as text (with the operation's fragments, when
    /// it has any): equal for every fetch that asks the same of an entity, whether
    /// flattened or one alias of a batch.
    pub selection: String,
}

/// The `_entities` calls of one fetch; empty for a root fetch.
pub type EntityCalls = Arc<[EntityCall]>;

/// A query plan, with the `_entities` calls of each of its entity fetches.
#[derive(Debug)]
pub struct Plan {
    pub query_plan: QueryPlan,
    entity_calls: HashMap<i64, EntityCalls>,
    /// The operation text of each fetch, shared by every request that sends it.
    documents: HashMap<i64, Arc<str>>,
}

impl Plan {
    /// Reads every entity fetch of `query_plan` once. The walk keeps its own stack: a plan
    /// is as deep as the operation the limits admitted, but no deeper call stack for it.
    pub fn new(query_plan: QueryPlan) -> Self {
        let mut entity_calls = HashMap::new();
        let mut documents = HashMap::new();
        let mut pending: Vec<&PlanNode> = query_plan.node.iter().collect();
        while let Some(node) = pending.pop() {
            match node {
                PlanNode::Fetch(fetch) => {
                    if fetch.requires.is_some() {
                        entity_calls.insert(fetch.id, flattened_calls(fetch));
                    }
                    documents.insert(fetch.id, Arc::from(fetch.operation.document_str.as_str()));
                }
                PlanNode::Subscription(_) | PlanNode::Defer(_) => {}
                PlanNode::BatchFetch(batch) => {
                    entity_calls.insert(batch.id, batch_calls(batch));
                    documents.insert(batch.id, Arc::from(batch.operation.document_str.as_str()));
                }
                PlanNode::Sequence(sequence) => pending.extend(&sequence.nodes),
                PlanNode::Parallel(parallel) => pending.extend(&parallel.nodes),
                PlanNode::Flatten(flatten) => pending.push(flatten.node.as_ref()),
                PlanNode::Condition(condition) => {
                    pending.extend(condition.if_clause.as_deref());
                    pending.extend(condition.else_clause.as_deref());
                }
            }
        }
        Self {
            query_plan,
            entity_calls,
            documents,
        }
    }

    /// The operation text of the fetch `id` (whose operation is `operation`), shared.
    pub fn document(&self, id: i64, operation: &SubgraphFetchOperation) -> Arc<str> {
        match self.documents.get(&id) {
            Some(text) if **text == *operation.document_str => text.clone(),
            // Not read for this node (another node has its id): copy it now.
            _ => Arc::from(operation.document_str.as_str()),
        }
    }

    /// The calls of an entity fetch (a `Fetch` with `requires`, flattened or not).
    pub fn flattened_calls(&self, fetch: &FetchNode) -> EntityCalls {
        match self.entity_calls.get(&fetch.id) {
            Some(calls) if calls.len() == 1 && calls[0].response_key == ENTITIES => calls.clone(),
            // Not read for this node (another node has its id): read it now.
            _ => flattened_calls(fetch),
        }
    }

    /// The calls of a batch fetch, one per alias, in the order of its aliases.
    pub fn batch_calls(&self, batch: &BatchFetchNode) -> EntityCalls {
        let aliases = &batch.entity_batch.aliases;
        match self.entity_calls.get(&batch.id) {
            Some(calls)
                if calls.len() == aliases.len()
                    && calls
                        .iter()
                        .zip(aliases)
                        .all(|(call, alias)| call.response_key == alias.alias) =>
            {
                calls.clone()
            }
            _ => batch_calls(batch),
        }
    }
}

/// The response key and representations variable of a flattened entity fetch.
const ENTITIES: &str = "_entities";

fn flattened_calls(fetch: &FetchNode) -> EntityCalls {
    Arc::new([entity_call(&fetch.operation, ENTITIES, "representations")])
}

fn batch_calls(batch: &BatchFetchNode) -> EntityCalls {
    batch
        .entity_batch
        .aliases
        .iter()
        .map(|alias| {
            entity_call(
                &batch.operation,
                &alias.alias,
                &alias.representations_variable_name,
            )
        })
        .collect()
}

/// The `_entities` call of `operation` answered under `response_key`.
fn entity_call(
    operation: &SubgraphFetchOperation,
    response_key: &str,
    representations_variable: &str,
) -> EntityCall {
    let document = &operation.document;
    let own = document
        .operation
        .selection_set
        .items
        .iter()
        .find_map(|item| match item {
            SelectionItem::Field(field) if field.selection_identifier() == response_key => {
                Some(field.selections.to_string())
            }
            _ => None,
        });
    let selection = match own {
        Some(mut selection) => {
            // The selection may spread the operation's fragments: they are part of it.
            for fragment in &document.fragments {
                selection.push(' ');
                selection.push_str(&fragment.to_string());
            }
            selection
        }
        None => operation.document_str.clone(),
    };
    EntityCall {
        response_key: response_key.to_owned(),
        representations_variable: representations_variable.to_owned(),
        selection,
    }
}

/// The kind of a fetch, as its plan node says (the node's kind, else its operation's).
pub fn kind(node: Option<&PlannedKind>, operation: &SubgraphFetchOperation) -> OperationKind {
    match node.or(operation.document.operation.operation_kind.as_ref()) {
        Some(PlannedKind::Mutation) => OperationKind::Mutation,
        Some(PlannedKind::Subscription) => OperationKind::Subscription,
        Some(PlannedKind::Query) | None => OperationKind::Query,
    }
}
