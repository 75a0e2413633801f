//! The gateway behind the HTTP layer: [`GatewayService`] implements
//! [`OperationExecutor`] by authenticating the caller, then running the request path
//! ([`execute_operation`](crate::pipeline::execute_operation), through the response cache
//! and in-flight de-duplication of [`crate::cache`]) and turning its result into an HTTP-level answer (status hints,
//! `Cache-Control`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use gantry_kit::viewer::{Caller, ClientAddr, ViewerState};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::Gateway;
use crate::auth::Authenticator;
use crate::cache::backend::CacheBackend;
use crate::cache::metrics::GatewayMetrics;
use crate::cache::{CacheSettings, Caching};
use crate::cost::COST_ESTIMATED_TOO_EXPENSIVE;
use crate::execute::GATEWAY_TIMEOUT;
use crate::graphql;
use crate::graphql_http::{
    GetAnswer, GraphQLRequest, GraphQLResponse, OperationExecutor, OperationKind, RequestContext,
};
use crate::header_rules::HeaderRules;
use crate::persisted::{PersistedQueries, Registrar};
use crate::pipeline;
use crate::rate_limit::{RateLimits, Requester};
use crate::shared::SharedState;
use crate::validate::{OperationKind as ValidatedKind, RequestError};

/// What the service adds around the request path, each part with its own settings.
#[derive(Debug, Clone, Default)]
pub struct ServiceFeatures {
    /// Redis, shared by every replica; `None` keeps shared state in this process.
    pub shared: Option<SharedState>,
    /// APQ, manifest and safelist; `None`: APQ only, stored in Redis when `shared` is set.
    pub persisted: Option<Arc<PersistedQueries>>,
    /// Response cache and de-duplication settings.
    pub cache: CacheSettings,
    /// Where cached responses and entities live (Redis when `shared` is set); build it with
    /// [`CacheBackend::new`] so the entity cache and the response cache share it.
    pub cache_backend: Option<CacheBackend>,
    /// Counters exposed at `/metrics`; shared with the subgraph de-duplication wrapper.
    pub metrics: Arc<GatewayMetrics>,
    /// Operations running the request path at once (0: no limit); the rest wait for a
    /// turn, while cache hits and requests sharing an identical one in flight go on.
    /// Under overload, thousands of requests running at once kept the Redis connection's
    /// task from being polled, every cache lookup timed out (12,447 errors in 13 s of the
    /// signed-in feed at 1,000 req/s) and the cache that should have absorbed the load
    /// fell away.
    pub max_concurrent_operations: usize,
    /// Time to answer one operation (`None`: no limit). Past it, subgraph fetches still
    /// running are abandoned and the client gets `504` with `GATEWAY_TIMEOUT` and the data
    /// that is complete.
    pub request_timeout: Option<Duration>,
    /// Rate limits per user or client address and per client name (each off unless set).
    pub rate_limits: Arc<RateLimits>,
    /// Which client headers the request path carries for the subgraphs' header rules.
    /// Default: client name and version.
    pub header_rules: Arc<HeaderRules>,
}

/// How long past the deadline an operation may still take to shape what it has, before it
/// is cut off with no data at all (a stage before execution overran the deadline).
const SHAPING_MARGIN: Duration = Duration::from_secs(1);

/// Runs client operations: authentication, then the request path.
#[derive(Debug)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
    auth: Arc<Authenticator>,
    shared: Option<SharedState>,
    persisted: Arc<PersistedQueries>,
    caching: Caching,
    request_timeout: Option<Duration>,
    rate_limits: Arc<RateLimits>,
    header_rules: Arc<HeaderRules>,
}

impl GatewayService {
    pub fn new(gateway: Arc<Gateway>, auth: Arc<Authenticator>, features: ServiceFeatures) -> Self {
        let persisted = features
            .persisted
            .unwrap_or_else(|| Arc::new(PersistedQueries::apq_only(features.shared.clone())));
        let backend = features.cache_backend.clone().unwrap_or_else(|| {
            CacheBackend::new(
                features.shared.clone(),
                features.cache.capacity,
                features.cache.max_ttl,
            )
        });
        let caching = Caching::new(features.cache.clone(), backend, features.metrics.clone())
            .with_turns(features.max_concurrent_operations);
        Self {
            gateway,
            auth,
            caching,
            shared: features.shared,
            persisted,
            request_timeout: features.request_timeout,
            rate_limits: features.rate_limits,
            header_rules: features.header_rules,
        }
    }

    /// Persisted queries (their counters feed `/metrics`).
    pub fn persisted(&self) -> &Arc<PersistedQueries> {
        &self.persisted
    }

    /// Redis, when this gateway shares state through it.
    pub fn shared_state(&self) -> Option<&SharedState> {
        self.shared.as_ref()
    }

    /// The response cache and operation de-duplication (their counters feed `/metrics`).
    pub fn caching(&self) -> &Caching {
        &self.caching
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
/// and its address; and the request id and trace context, so the subgraphs' log lines of
/// this request carry the same ones; and the client headers the header rules may send.
fn forwarded_headers(
    rules: &HeaderRules,
    headers: &HeaderMap,
    client: Option<ClientAddr>,
    request_id: &str,
) -> HeaderMap {
    let mut forwarded = rules.client_headers(headers);
    forwarded.extend(crate::telemetry::correlation_headers(headers, request_id));
    if let Some(value) = headers.get(AUTHORIZATION) {
        forwarded.insert(AUTHORIZATION, value.clone());
    }
    if let Some(value) = client.and_then(|c| HeaderValue::from_str(&c.0.to_string()).ok()) {
        forwarded.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    forwarded
}

impl GatewayService {
    /// Runs a request whose text the persisted-query step has filled in.
    async fn run(&self, request: GraphQLRequest, context: &RequestContext) -> GraphQLResponse {
        let Some(query) = request.query else {
            return persisted_query_not_found();
        };
        let viewer = self.auth.authenticate(&context.headers).await;
        if let ViewerState::Rejected(reason) = &viewer {
            return unauthenticated(reason.to_string());
        }
        let viewer_id = viewer.viewer().map(|v| v.user_id);
        let requester = Requester {
            user: viewer_id,
            address: context.client_addr,
            headers: &context.headers,
        };
        let cost = self.rate_limited_cost(
            &query,
            request.operation_name.as_deref(),
            request.variables.as_ref(),
        );
        if let Err(refusal) = self.rate_limits.admit(requester, cost).await {
            return *refusal;
        }
        let client = context.client_addr.map(ClientAddr);
        let deadline = self.request_timeout.map(|timeout| Instant::now() + timeout);
        let pipeline_context = pipeline::RequestContext {
            forwarded_headers: forwarded_headers(
                &self.header_rules,
                &context.headers,
                client,
                &context.request_id,
            ),
            context: Some(Arc::new(Caller { viewer, client })),
            request_id: Some(context.request_id.clone()),
            deadline,
        };
        // The operation's name for the access log and metrics, when the client sent none.
        let unnamed = request.operation_name.is_none().then(|| query.clone());
        let pipeline_request = graphql::GraphQLRequest {
            query,
            operation_name: request.operation_name,
            variables: request.variables.unwrap_or_default(),
            extensions: request.extensions,
        };
        let answer = self.caching.execute(
            self.gateway.clone(),
            pipeline_request,
            pipeline_context,
            viewer_id,
        );
        let response = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline + SHAPING_MARGIN, answer)
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(request_id = %context.request_id, "the request deadline passed before execution");
                    GraphQLResponse::request_error(
                        "The request deadline passed before the operation could run",
                        GATEWAY_TIMEOUT,
                    )
                }),
            None => answer.await,
        };
        let mut response = with_deadline_status(response);
        response.operation_name =
            unnamed.and_then(|query| self.gateway.prepared_operation_name(&query));
        response
    }

    /// What a cost rate limit charges the request: its estimated cost (validated through
    /// the cache the request path then reuses), or 1 when there is no cost limit, the
    /// request does not validate, or the estimate is over the maximum (each refused before
    /// anything runs).
    fn rate_limited_cost(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&serde_json::Map<String, Value>>,
    ) -> u32 {
        if !self.rate_limits.charges_cost() {
            return 1;
        }
        let no_variables = serde_json::Map::new();
        let estimated =
            self.gateway
                .estimated_cost(query, operation_name, variables.unwrap_or(&no_variables));
        let max = self.gateway.cost().settings().max_operation_cost;
        match estimated {
            Some(cost) if max == 0 || cost <= max => u32::try_from(cost).unwrap_or(u32::MAX),
            _ => 1,
        }
    }

    /// The kind of a request whose text the persisted-query step has filled in.
    fn kind(&self, request: &GraphQLRequest) -> Result<OperationKind, Box<GraphQLResponse>> {
        let Some(query) = &request.query else {
            return Err(Box::new(persisted_query_not_found()));
        };
        match self
            .gateway
            .operation_kind(query, request.operation_name.as_deref())
        {
            Ok(ValidatedKind::Query) => Ok(OperationKind::Query),
            Ok(ValidatedKind::Mutation) => Ok(OperationKind::Mutation),
            Ok(ValidatedKind::Subscription) => Ok(OperationKind::Subscription),
            Err(error) => Err(Box::new(GraphQLResponse::new(
                json!({ "errors": error.into_graphql_errors() }),
            ))),
        }
    }
}

/// `504` when the deadline cut the operation short (whatever data was complete is in the
/// body); `400` when its estimated cost refused it, whatever the media type.
fn with_deadline_status(mut response: GraphQLResponse) -> GraphQLResponse {
    let has_code = |code: &str| {
        response
            .body
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|errors| {
                errors
                    .iter()
                    .any(|error| error["extensions"]["code"] == code)
            })
    };
    if has_code(GATEWAY_TIMEOUT) {
        response.http_status_hint = Some(StatusCode::GATEWAY_TIMEOUT);
    } else if has_code(COST_ESTIMATED_TOO_EXPENSIVE) {
        response.http_status_hint = Some(StatusCode::BAD_REQUEST);
    }
    response
}

/// Who registers an APQ text, as registration limits count it: the client's address.
fn registering_client(context: &RequestContext) -> String {
    context
        .client_addr
        .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
}

impl GatewayService {
    /// Whether `query` parses and validates against the API schema, whatever its
    /// variables: what an APQ text must do to be registered. The validation is the
    /// request path's own (and cached with it), so a registered text is not validated again
    /// when it runs.
    fn validates(&self, query: &str, operation_name: Option<&str>) -> bool {
        let supergraph = self.gateway.supergraph();
        let validated = self.gateway.validator().validate(
            supergraph.api_schema(),
            query,
            operation_name,
            &serde_json::Map::new(),
        );
        matches!(validated, Ok(_) | Err(RequestError::Variables(_)))
    }
}

fn persisted_query_not_found() -> GraphQLResponse {
    GraphQLResponse::request_error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
}

#[async_trait]
impl OperationExecutor for GatewayService {
    async fn execute(
        &self,
        mut request: GraphQLRequest,
        context: &RequestContext,
    ) -> GraphQLResponse {
        let client = registering_client(context);
        let validates = |query: &str, name: Option<&str>| self.validates(query, name);
        let registrar = Registrar {
            client: &client,
            validates: &validates,
        };
        if let Err(refusal) = self
            .persisted
            .resolve(&mut request, &context.headers, &registrar)
            .await
        {
            return refusal;
        }
        self.run(request, context).await
    }

    async fn operation_kind(
        &self,
        request: &GraphQLRequest,
        context: &RequestContext,
    ) -> Result<OperationKind, GraphQLResponse> {
        let mut request = request.clone();
        let _unsettled = self.persisted.peek(&mut request, &context.headers).await?;
        self.kind(&request).map_err(|refusal| *refusal)
    }

    /// Resolves the persisted query and finds the kind once, where the default would do
    /// both twice (a tenth of a cached GET's instructions).
    async fn execute_get(
        &self,
        mut request: GraphQLRequest,
        context: &RequestContext,
    ) -> GetAnswer {
        let resolved = match self.persisted.peek(&mut request, &context.headers).await {
            Ok(resolved) => resolved,
            Err(refusal) => return GetAnswer::Response(Box::new(refusal)),
        };
        match self.kind(&request) {
            Err(refusal) => GetAnswer::Response(refusal),
            Ok(OperationKind::Mutation) => GetAnswer::MutationRefused,
            Ok(OperationKind::Query | OperationKind::Subscription) => {
                let client = registering_client(context);
                let validates = |query: &str, name: Option<&str>| self.validates(query, name);
                let registrar = Registrar {
                    client: &client,
                    validates: &validates,
                };
                self.persisted.settle(resolved, &request, &registrar).await;
                GetAnswer::Response(Box::new(self.run(request, context).await))
            }
        }
    }
}
