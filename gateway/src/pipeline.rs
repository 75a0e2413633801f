//! The request path, top to bottom: validate → cost estimate → plan (cached) → execute →
//! shape → response size cap.

use std::any::Any;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderMap};

use crate::Gateway;
use crate::execute::{ExecutionContext, RESPONSE_TOO_LARGE, execute_plan};
use crate::graphql::{GraphQLError, GraphQLRequest, GraphQLResponse};
use crate::plan::plan_operation;
use crate::response::shape_response;

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

/// Runs one GraphQL operation through every stage.
#[tracing::instrument(skip_all, fields(operation_name = request.operation_name.as_deref()))]
pub async fn execute_operation(
    gateway: &Gateway,
    request: GraphQLRequest,
    context: RequestContext,
) -> GraphQLResponse {
    let supergraph = gateway.supergraph();
    let schema = supergraph.api_schema();

    let operation = match gateway.validator().validate(
        schema,
        &request.query,
        request.operation_name.as_deref(),
        &request.variables,
    ) {
        Ok(operation) => operation,
        Err(error) => return GraphQLResponse::request_errors(error.into_graphql_errors()),
    };
    if let Err(refusal) = gateway.cost().admit(supergraph.costs(), &operation) {
        return GraphQLResponse::request_errors(vec![*refusal]);
    }

    let plan = match operation.prepared.plan.get() {
        Some(plan) => plan.clone(),
        None => match plan_operation(
            &supergraph,
            &operation.document,
            operation.operation_name.as_deref(),
        ) {
            Ok(plan) => operation.prepared.plan.get_or_init(|| plan).clone(),
            Err(error) => {
                tracing::error!(request_id = context.request_id.as_deref(), error = %error, "planning failed");
                return GraphQLResponse::request_errors(vec![internal_error(&context)]);
            }
        },
    };

    let execution = ExecutionContext {
        transports: gateway.transports(),
        schema,
        variables: &operation.variables,
        headers: &context.forwarded_headers,
        context: context.context.clone(),
        deadline: context.deadline,
        max_entity_representations: gateway.max_entity_representations(),
    };
    let output = execute_plan(&plan, &execution).await;

    let mut response = shape_response(
        schema,
        &operation,
        output.data,
        output.errors,
        &output.unresolved,
    );
    response.subgraph_cache_control = output.cache_control;
    cap_response(response, gateway.max_response_bytes())
}

/// The response, unless its JSON would be longer than `limit`: then only an error saying so.
fn cap_response(response: GraphQLResponse, limit: usize) -> GraphQLResponse {
    if crate::transport::serializes_within(&response, limit) {
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

/// What the client sees of an internal error: a generic message and the request id.
fn internal_error(context: &RequestContext) -> GraphQLError {
    let mut error = GraphQLError::with_code("Internal server error", "INTERNAL_SERVER_ERROR");
    if let Some(id) = &context.request_id {
        error = error.extension("requestId", serde_json::Value::String(id.clone()));
    }
    error
}
