//! The request path, top to bottom: prepare (limits, validation, plan: once per document)
//! → coerce variables → cost estimate → execute (the plan with unauthorized fields removed,
//! when the caller may not see some) → write the response straight to bytes (shaped by the
//! client's operation) → response size cap.

use std::any::Any;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderMap};

use serde_json::{Map, Value};

use crate::Gateway;
use crate::authorization::operation::Denied;
use crate::execute::{ExecutionContext, RESPONSE_TOO_LARGE, execute_plan};
use crate::graphql::{GraphQLError, GraphQLRequest, GraphQLResponse};
use crate::limits::truncate_errors;
use crate::prepare::PreparedOperation;
use crate::response::write_data;
use crate::runtime::SupergraphRuntime;
use crate::variables::coerce_variables;

/// Per-request data from the HTTP layer.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// Headers forwarded to every subgraph request (e.g. `Authorization`).
    pub forwarded_headers: HeaderMap,
    /// Handed to transports untouched, see [`crate::transport::SubgraphRequest::context`].
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// Correlates the client's error with the log line of an internal error.
    pub request_id: Option<String>,
    /// When the answer is due: a subgraph fetch still running then is abandoned with a
    /// `GATEWAY_TIMEOUT` error, and the data already complete is sent.
    pub deadline: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// Keeps the client headers a subgraph needs: `Authorization`.
    pub fn from_client_headers(headers: &HeaderMap) -> Self {
        let mut forwarded_headers = HeaderMap::new();
        if let Some(value) = headers.get(AUTHORIZATION) {
            forwarded_headers.insert(AUTHORIZATION, value.clone());
        }
        Self {
            forwarded_headers,
            ..Self::default()
        }
    }
}

/// Runs one GraphQL operation through every stage: prepare (or find it prepared), then
/// [`execute_prepared`].
#[tracing::instrument(skip_all, fields(operation_name = request.operation_name.as_deref()))]
pub async fn execute_operation(
    gateway: &Gateway,
    request: GraphQLRequest,
    context: RequestContext,
) -> GraphQLResponse {
    let runtime = gateway.runtime();
    match runtime
        .prepare(request.text(), request.operation_name.as_deref())
        .await
    {
        Ok(prepared) => {
            execute_prepared(
                gateway,
                &runtime,
                &prepared,
                None,
                request.variables(),
                context,
            )
            .await
        }
        Err(refusal) => GraphQLResponse::request_errors(
            refusal.to_graphql_errors(context.request_id.as_deref()),
        ),
    }
}

/// Runs a prepared operation with the request's variables: coerce them, execute the plan,
/// write the response. `runtime` is the one `prepared` was prepared by; `denied`, when the
/// caller may not see some fields, holds the plan without them and the errors that say so.
pub async fn execute_prepared(
    gateway: &Gateway,
    runtime: &SupergraphRuntime,
    prepared: &PreparedOperation,
    denied: Option<&Denied>,
    variables: &Map<String, Value>,
    context: RequestContext,
) -> GraphQLResponse {
    let schema = runtime.supergraph().api_schema();
    let max_errors = runtime.preparer().limits().max_errors;
    let variables = match coerce_variables(schema, prepared.variable_definitions(), variables) {
        Ok(variables) => variables,
        Err(errors) => {
            return GraphQLResponse::request_errors(truncate_errors(errors, max_errors));
        }
    };
    if let Err(refusal) = gateway.cost().admit(
        runtime.supergraph().costs(),
        prepared.for_cost(),
        &variables,
    ) {
        return GraphQLResponse::request_errors(vec![*refusal]);
    }

    let execution = ExecutionContext {
        transports: gateway.transports(),
        schema,
        variables: &variables,
        headers: &context.forwarded_headers,
        context: context.context.clone(),
        deadline: context.deadline,
        max_entity_representations: gateway.max_entity_representations(),
    };
    let (plan, mut errors) = match denied {
        Some(denied) => (&denied.plan, denied.errors.clone()),
        None => (&prepared.plan, Vec::new()),
    };
    let output = execute_plan(plan, &execution).await;
    errors.extend(output.errors);

    let mut body = GraphQLResponse::body_start(prepared.written_size_hint());
    let errors = write_data(
        schema,
        prepared.shaped(),
        &variables,
        &output.data,
        errors,
        &output.unresolved,
        &mut body,
    );
    drop(output.data);
    prepared.remember_written_size(body.len());
    let mut response = GraphQLResponse::written(body, truncate_errors(errors, max_errors));
    response.subgraph_cache_control = output.cache_control;
    response.subgraph_headers = output.headers;
    cap_response(response, gateway.max_response_bytes())
}

/// The response, unless its JSON is longer than `limit`: then only an error saying so.
fn cap_response(response: GraphQLResponse, limit: usize) -> GraphQLResponse {
    if response
        .body
        .written()
        .is_none_or(|bytes| bytes.len() <= limit)
    {
        return response;
    }
    tracing::warn!(limit, "a response over the size limit was not sent");
    GraphQLResponse::request_errors(vec![
        GraphQLError::with_code(
            format!("The response is larger than the limit of {limit} bytes."),
            RESPONSE_TOO_LARGE,
        )
        .extension("limit", serde_json::Value::from(limit)),
    ])
}
