//! The gateway behind the HTTP layer: [`GatewayService`] implements
//! [`OperationExecutor`] by authenticating the caller, then running the request path
//! ([`execute_operation`]) and turning its result into an HTTP-level answer (status hints,
//! `Cache-Control`).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use gantry_kit::viewer::{Caller, ClientAddr, ViewerState};
use serde_json::json;

use crate::Gateway;
use crate::auth::Authenticator;
use crate::graphql;
use crate::graphql_http::{
    GraphQLRequest, GraphQLResponse, OperationExecutor, OperationKind, RequestContext,
};
use crate::pipeline::{self, execute_operation};
use crate::shared::SharedState;
use crate::validate::{self, OperationKind as ValidatedKind};

/// What the service adds around the request path, each part with its own settings.
#[derive(Debug, Clone, Default)]
pub struct ServiceFeatures {
    /// Redis, shared by every replica; `None` keeps shared state in this process.
    pub shared: Option<SharedState>,
}

/// Runs client operations: authentication, then the request path.
#[derive(Debug)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
    auth: Arc<Authenticator>,
    shared: Option<SharedState>,
}

impl GatewayService {
    pub fn new(gateway: Arc<Gateway>, auth: Arc<Authenticator>, features: ServiceFeatures) -> Self {
        Self {
            gateway,
            auth,
            shared: features.shared,
        }
    }

    /// Redis, when this gateway shares state through it.
    pub fn shared_state(&self) -> Option<&SharedState> {
        self.shared.as_ref()
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }
}

fn unauthenticated(message: String) -> GraphQLResponse {
    let mut response = GraphQLResponse::request_error(message, "UNAUTHENTICATED")
        .with_status(StatusCode::UNAUTHORIZED);
    response.extra_headers.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// What every subgraph hears about the client: its token (HTTP subgraphs verify it again)
/// and its address.
fn forwarded_headers(headers: &HeaderMap, client: Option<ClientAddr>) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    if let Some(value) = headers.get(AUTHORIZATION) {
        forwarded.insert(AUTHORIZATION, value.clone());
    }
    if let Some(value) = client.and_then(|c| HeaderValue::from_str(&c.0.to_string()).ok()) {
        forwarded.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    forwarded
}

#[async_trait]
impl OperationExecutor for GatewayService {
    async fn execute(&self, request: GraphQLRequest, context: &RequestContext) -> GraphQLResponse {
        let Some(query) = request.query else {
            return GraphQLResponse::request_error(
                "PersistedQueryNotFound",
                "PERSISTED_QUERY_NOT_FOUND",
            );
        };
        let viewer = self.auth.authenticate(&context.headers).await;
        if let ViewerState::Rejected(reason) = &viewer {
            return unauthenticated(reason.to_string());
        }
        let client = context.client_addr.map(ClientAddr);
        let pipeline_context = pipeline::RequestContext {
            forwarded_headers: forwarded_headers(&context.headers, client),
            context: Some(Arc::new(Caller { viewer, client })),
            request_id: Some(context.request_id.clone()),
        };
        let pipeline_request = graphql::GraphQLRequest {
            query,
            operation_name: request.operation_name,
            variables: request.variables.unwrap_or_default(),
            extensions: request.extensions,
        };
        let response = execute_operation(&self.gateway, pipeline_request, pipeline_context).await;
        let mut body = response.to_json();
        if body.get("data").is_none() && body.get("errors").is_none() {
            body = json!({ "data": null });
        }
        GraphQLResponse::new(body)
    }

    async fn operation_kind(
        &self,
        request: &GraphQLRequest,
        _context: &RequestContext,
    ) -> Result<OperationKind, GraphQLResponse> {
        let Some(query) = &request.query else {
            return Err(GraphQLResponse::request_error(
                "PersistedQueryNotFound",
                "PERSISTED_QUERY_NOT_FOUND",
            ));
        };
        match validate::operation_kind(query, request.operation_name.as_deref()) {
            Ok(ValidatedKind::Query) => Ok(OperationKind::Query),
            Ok(ValidatedKind::Mutation) => Ok(OperationKind::Mutation),
            Ok(ValidatedKind::Subscription) => Ok(OperationKind::Subscription),
            Err(error) => Err(GraphQLResponse::new(
                json!({ "errors": error.into_graphql_errors() }),
            )),
        }
    }
}
