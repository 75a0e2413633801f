//! Plan execution: walks the query plan, sends each fetch through its subgraph transport, and
//! merges the results into one data tree (shaped for the client later, by `response`).

mod entities;
mod json;
mod subgraph_errors;

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, join_all};
use hive_router_query_planner::planner::plan_nodes::{
    BatchFetchNode, FetchNode, FlattenNodePathSegment, PlanNode,
};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use self::entities::EntityBatch;
use self::json::{apply_rewrite, deep_merge};
use self::subgraph_errors::{ResponseOrigin, translate_error, transport_error};
use crate::fetch::{self, EntityCalls, Plan};
use crate::graphql::{GraphQLError, OperationKind, PathSegment};
use crate::schema::ApiSchema;
use crate::transport::{SubgraphRequest, SubgraphResponse, Transports};

pub(crate) use self::json::{SCANNED_ENTRIES, member};
pub use self::subgraph_errors::{RESPONSE_TOO_LARGE, SUBGRAPH_ERROR};

/// What one execution needs besides the plan.
pub struct ExecutionContext<'a> {
    pub transports: &'a Transports,
    pub schema: &'a ApiSchema,
    /// The client's coerced variables.
    pub variables: &'a Map<String, Value>,
    /// Headers forwarded to every subgraph request.
    pub headers: &'a HeaderMap,
    /// Passed through to transports as [`SubgraphRequest::context`].
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// The request's deadline: a fetch still running then is abandoned (see
    /// [`GATEWAY_TIMEOUT`]).
    pub deadline: Option<tokio::time::Instant>,
    /// The most representations one `_entities` fetch may carry (all its aliases together);
    /// a larger batch fails that fetch with [`TOO_MANY_REPRESENTATIONS`] and is not sent.
    pub max_entity_representations: usize,
}

/// The code of an entity fetch refused for carrying more representations than allowed;
/// the data from every other fetch still comes back.
pub const TOO_MANY_REPRESENTATIONS: &str = "TOO_MANY_REPRESENTATIONS";

/// The code of the error a fetch gets when the request's deadline passes before its
/// subgraph answers; the rest of the data still comes back, with HTTP `504`.
pub const GATEWAY_TIMEOUT: &str = "GATEWAY_TIMEOUT";

/// The merged data of every fetch, before shaping.
#[derive(Debug, Default)]
pub struct ExecutionOutput {
    pub data: Value,
    pub errors: Vec<GraphQLError>,
    pub cache_control: Vec<String>,
    /// The response headers the header rules let through, of every fetch, in order.
    pub headers: HeaderMap,
    /// Where the objects of entity fetches that failed as a whole (the subgraph could not
    /// be reached) sit: the fetch's one `SUBGRAPH_ERROR` explains every null at or below
    /// them, so shaping adds no "Cannot return null" error per object.
    pub unresolved: Vec<Vec<PathSegment>>,
}

/// Executes a plan. Never fails as a whole: a failed fetch leaves its part of the data
/// missing and adds an error.
#[tracing::instrument(name = "execute", skip_all)]
pub async fn execute_plan(plan: &Plan, context: &ExecutionContext<'_>) -> ExecutionOutput {
    let executor = Executor::new(plan, context);
    if let Some(node) = &plan.query_plan.node {
        executor.execute_node(node).await;
    }
    executor.finish()
}

/// Runs the rest of a subscription's plan for one event: `event` is the subscription
/// fetch's answer (`primary`), merged as a root fetch's would be; `rest` then resolves the
/// fields other subgraphs own, as after any root fetch.
#[tracing::instrument(name = "execute_event", skip_all)]
pub async fn execute_after_primary(
    plan: &Plan,
    primary: &FetchNode,
    event: SubgraphResponse,
    rest: Option<&PlanNode>,
    context: &ExecutionContext<'_>,
) -> ExecutionOutput {
    let executor = Executor::new(plan, context);
    executor.merge_root(primary, event);
    if let Some(node) = rest {
        executor.execute_node(node).await;
    }
    executor.finish()
}

impl<'a> Executor<'a> {
    fn new(plan: &'a Plan, context: &'a ExecutionContext<'a>) -> Self {
        Self {
            plan,
            context,
            data: Mutex::new(Value::Object(Map::new())),
            errors: Mutex::new(Vec::new()),
            cache_control: Mutex::new(Vec::new()),
            headers: Mutex::new(HeaderMap::new()),
            unresolved: Mutex::new(Vec::new()),
        }
    }

    fn finish(self) -> ExecutionOutput {
        let executor = self;
        ExecutionOutput {
            data: executor
                .data
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            errors: executor
                .errors
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            cache_control: executor
                .cache_control
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            headers: executor
                .headers
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            unresolved: executor
                .unresolved
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }
}

struct Executor<'a> {
    plan: &'a Plan,
    context: &'a ExecutionContext<'a>,
    /// Locked only between awaits, never across one.
    data: Mutex<Value>,
    errors: Mutex<Vec<GraphQLError>>,
    cache_control: Mutex<Vec<String>>,
    headers: Mutex<HeaderMap>,
    unresolved: Mutex<Vec<Vec<PathSegment>>>,
}

impl<'a> Executor<'a> {
    fn execute_node<'n>(&'n self, node: &'n PlanNode) -> BoxFuture<'n, ()> {
        Box::pin(async move {
            match node {
                PlanNode::Sequence(sequence) => {
                    for node in &sequence.nodes {
                        self.execute_node(node).await;
                    }
                }
                PlanNode::Parallel(parallel) => {
                    join_all(parallel.nodes.iter().map(|node| self.execute_node(node))).await;
                }
                PlanNode::Condition(condition) => {
                    let value = self.context.variables.get(&condition.condition);
                    let branch = if value.and_then(Value::as_bool).unwrap_or(false) {
                        &condition.if_clause
                    } else {
                        &condition.else_clause
                    };
                    if let Some(node) = branch {
                        self.execute_node(node).await;
                    }
                }
                PlanNode::Flatten(flatten) => match flatten.node.as_ref() {
                    PlanNode::Fetch(fetch) => {
                        self.entity_fetch(fetch, flatten.path.as_slice()).await
                    }
                    other => self.execute_node(other).await,
                },
                PlanNode::Fetch(fetch) if fetch.requires.is_some() => {
                    self.entity_fetch(fetch, &[]).await
                }
                PlanNode::Fetch(fetch) => self.root_fetch(fetch).await,
                PlanNode::BatchFetch(batch) => self.batch_fetch(batch).await,
                PlanNode::Subscription(_) | PlanNode::Defer(_) => {
                    tracing::error!("the plan contains a node kind the gateway does not execute");
                    self.push_errors(vec![GraphQLError::with_code(
                        "Internal server error",
                        "INTERNAL_SERVER_ERROR",
                    )]);
                }
            }
        })
    }

    async fn root_fetch(&self, fetch: &FetchNode) {
        let variables = self.forwarded_variables(fetch.variable_usages.iter().flatten());
        let kind = fetch::kind(fetch.operation_kind.as_ref(), &fetch.operation);
        let Some(response) = self
            .send(
                &fetch.service_name,
                self.plan.document(fetch.id, &fetch.operation),
                (kind, EntityCalls::default()),
                variables,
            )
            .await
        else {
            return;
        };
        self.merge_root(fetch, response);
    }

    /// Merges a root fetch's answer into the data, its errors into the errors.
    fn merge_root(&self, fetch: &FetchNode, response: SubgraphResponse) {
        let errors: Vec<_> = response
            .errors
            .iter()
            .flat_map(|raw| translate_error(&fetch.service_name, raw, &ResponseOrigin::Root))
            .collect();
        if let Some(mut data) = response.data {
            for rewrite in fetch.output_rewrites.iter().flatten() {
                apply_rewrite(self.context.schema, rewrite, &mut data);
            }
            deep_merge(&mut self.lock_data(), data);
        }
        self.push_errors(errors);
    }

    async fn entity_fetch(&self, fetch: &FetchNode, path: &[FlattenNodePathSegment]) {
        let Some(requires) = &fetch.requires else {
            return self.root_fetch(fetch).await;
        };
        let mut batch = EntityBatch::collect(
            self.context.schema,
            &self.lock_data(),
            &[path],
            requires,
            fetch.input_rewrites.as_deref(),
        );
        if batch.representations.is_empty() {
            return;
        }
        if !self.within_representation_limit(&fetch.service_name, batch.representations.len()) {
            return self.mark_unresolved(&[batch]);
        }
        let mut variables = self.forwarded_variables(fetch.variable_usages.iter().flatten());
        variables.insert(
            "representations".into(),
            Value::Array(std::mem::take(&mut batch.representations)),
        );
        let Some(mut response) = self
            .send(
                &fetch.service_name,
                self.plan.document(fetch.id, &fetch.operation),
                (
                    fetch::kind(fetch.operation_kind.as_ref(), &fetch.operation),
                    self.plan.flattened_calls(fetch),
                ),
                variables,
            )
            .await
        else {
            return self.mark_unresolved(&[batch]);
        };
        let entities = take_entities(&mut response.data, "_entities");
        let origin = ResponseOrigin::Entities(vec![("_entities", &batch)]);
        let errors: Vec<_> = response
            .errors
            .iter()
            .flat_map(|raw| translate_error(&fetch.service_name, raw, &origin))
            .collect();
        self.merge_entities(&batch, entities, fetch.output_rewrites.as_deref());
        self.push_errors(errors);
    }

    async fn batch_fetch(&self, node: &BatchFetchNode) {
        let aliases = &node.entity_batch.aliases;
        let mut batches: Vec<EntityBatch> = {
            let data = self.lock_data();
            aliases
                .iter()
                .map(|alias| {
                    let paths: Vec<_> = alias.merge_paths.iter().map(|p| p.as_slice()).collect();
                    EntityBatch::collect(
                        self.context.schema,
                        &data,
                        &paths,
                        &alias.requires,
                        alias.input_rewrites.as_deref(),
                    )
                })
                .collect()
        };
        if batches.iter().all(|batch| batch.representations.is_empty()) {
            return;
        }
        let representations = batches.iter().map(|b| b.representations.len()).sum();
        if !self.within_representation_limit(&node.service_name, representations) {
            return self.mark_unresolved(&batches);
        }
        let mut variables = self.forwarded_variables(node.variable_usages.iter().flatten());
        for (alias, batch) in aliases.iter().zip(&mut batches) {
            variables.insert(
                alias.representations_variable_name.clone(),
                Value::Array(std::mem::take(&mut batch.representations)),
            );
        }
        let Some(mut response) = self
            .send(
                &node.service_name,
                self.plan.document(node.id, &node.operation),
                (
                    fetch::kind(node.operation_kind.as_ref(), &node.operation),
                    self.plan.batch_calls(node),
                ),
                variables,
            )
            .await
        else {
            return self.mark_unresolved(&batches);
        };
        let origin = ResponseOrigin::Entities(
            aliases
                .iter()
                .zip(&batches)
                .map(|(alias, batch)| (alias.alias.as_str(), batch))
                .collect(),
        );
        let errors: Vec<_> = response
            .errors
            .iter()
            .flat_map(|raw| translate_error(&node.service_name, raw, &origin))
            .collect();
        for (alias, batch) in aliases.iter().zip(&batches) {
            let entities = take_entities(&mut response.data, &alias.alias);
            self.merge_entities(batch, entities, alias.output_rewrites.as_deref());
        }
        self.push_errors(errors);
    }

    fn merge_entities(
        &self,
        batch: &EntityBatch<'_>,
        mut entities: Vec<Value>,
        output_rewrites: Option<&[hive_router_query_planner::planner::plan_nodes::FetchRewrite]>,
    ) {
        for entity in &mut entities {
            for rewrite in output_rewrites.unwrap_or_default() {
                apply_rewrite(self.context.schema, rewrite, entity);
            }
        }
        batch.merge(&mut self.lock_data(), entities);
    }

    /// Sends one subgraph request, of the kind and with the entity calls its plan node
    /// says; on transport failure records a `SUBGRAPH_ERROR`.
    async fn send(
        &self,
        service: &str,
        query: Arc<str>,
        (kind, entity_calls): (OperationKind, EntityCalls),
        variables: Map<String, Value>,
    ) -> Option<SubgraphResponse> {
        let request = SubgraphRequest {
            subgraph_name: service.to_string(),
            query,
            kind,
            entity_calls,
            operation_name: None,
            variables,
            headers: self.context.headers.clone(),
            extensions: Map::new(),
            context: self.context.context.clone(),
        };
        let sent = self.context.transports.execute(request);
        let answered = match self.context.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, sent).await,
            None => Ok(sent.await),
        };
        let Ok(answered) = answered else {
            tracing::warn!(
                subgraph = service,
                "the request deadline passed before the subgraph answered"
            );
            self.push_errors(vec![
                GraphQLError::with_code(
                    format!("The request deadline passed before subgraph `{service}` answered"),
                    GATEWAY_TIMEOUT,
                )
                .extension("serviceName", Value::String(service.to_owned())),
            ]);
            return None;
        };
        match answered {
            Ok(response) => {
                // An empty entry stands for a fetch without a hint, which makes the whole
                // response uncacheable (see the response cache's `CachePolicy`).
                self.cache_control
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(response.cache_control.clone().unwrap_or_default());
                if !response.headers.is_empty() {
                    let mut headers = self.headers.lock().unwrap_or_else(PoisonError::into_inner);
                    for (name, value) in &response.headers {
                        headers.append(name, value.clone());
                    }
                }
                Some(response)
            }
            Err(error) => {
                self.push_errors(vec![transport_error(service, &error)]);
                None
            }
        }
    }

    /// Whether an entity fetch of `count` representations may go out; records the error
    /// when not.
    fn within_representation_limit(&self, service: &str, count: usize) -> bool {
        let limit = self.context.max_entity_representations;
        if count <= limit {
            return true;
        }
        tracing::warn!(
            subgraph = service,
            representations = count,
            limit,
            "an entity fetch over the representations limit was not sent"
        );
        self.push_errors(vec![
            GraphQLError::with_code(
                format!(
                    "An entity fetch to subgraph \"{service}\" needs {count} representations, \
                     more than the limit of {limit}."
                ),
                TOO_MANY_REPRESENTATIONS,
            )
            .extension("serviceName", Value::String(service.to_owned()))
            .extension("limit", Value::from(limit)),
        ]);
        false
    }

    fn forwarded_variables<'v>(
        &self,
        usages: impl Iterator<Item = &'v String>,
    ) -> Map<String, Value> {
        usages
            .filter_map(|name| {
                let value = self.context.variables.get(name)?;
                Some((name.clone(), value.clone()))
            })
            .collect()
    }

    fn mark_unresolved(&self, batches: &[EntityBatch<'_>]) {
        self.unresolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batches.iter().flat_map(EntityBatch::paths));
    }

    fn lock_data(&self) -> std::sync::MutexGuard<'_, Value> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push_errors(&self, errors: Vec<GraphQLError>) {
        if !errors.is_empty() {
            self.errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(errors);
        }
    }
}

/// Takes the `_entities` list (or a batch alias's list) out of a subgraph response.
fn take_entities(data: &mut Option<Value>, key: &str) -> Vec<Value> {
    match data
        .as_mut()
        .and_then(|data| data.get_mut(key))
        .map(Value::take)
    {
        Some(Value::Array(entities)) => entities,
        _ => Vec::new(),
    }
}
