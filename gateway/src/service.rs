//! The gateway behind the HTTP layer: [`GatewayService`] implements
//! [`OperationExecutor`]. For each request it resolves the persisted query, prepares the
//! document once ([`crate::runtime`]: limits, validation, plan; its kind decides GET's fate
//! and whether an APQ text is registered), authenticates the caller, removes the fields the
//! caller may not see ([`crate::authorization`]), applies rate limits, then runs the prepared operation
//! ([`execute_prepared`](crate::pipeline::execute_prepared), through the response cache and
//! in-flight de-duplication of [`crate::cache`]) and turns its result into an HTTP-level
//! answer (status hints, `Cache-Control`). Preparing comes before authentication so the
//! rate limits can charge an operation's estimated cost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use gantry_identity::viewer::{Caller, ClientAddr};
use serde_json::Value;
use tokio::time::Instant;

use crate::Gateway;
use crate::auth::{Authenticator, Identity};
use crate::authorization::AuthorizationSettings;
use crate::authorization::operation::Denied;
use crate::cache::backend::CacheBackend;
use crate::cache::metrics::GatewayMetrics;
use crate::cache::{CacheSettings, Caching, Operation};
use crate::cost::COST_ESTIMATED_TOO_EXPENSIVE;
use crate::defer;
use crate::execute::GATEWAY_TIMEOUT;
use crate::graphql::{GraphQLRequest, GraphQLResponse, OperationKind};
use crate::graphql_http::{GetAnswer, OperationExecutor, RequestContext, incremental_format};
use crate::header_rules::HeaderRules;
use crate::override_labels::ActiveLabels;
use crate::persisted::{PersistedQueries, Registrar};
use crate::pipeline;
use crate::prepare::PrepareError;
use crate::prepare::PreparedOperation;
use crate::rate_limit::{RateLimits, Requester};
use crate::runtime::{Authorized, SupergraphRuntime};
use crate::shared::SharedState;
use crate::supergraph::Supergraph;

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
    /// The header a client names progressive override labels in (comma-separated), each
    /// active for its request when the supergraph uses it. Default: none (only
    /// `percent(x)` labels are ever active).
    pub override_labels_header: Option<HeaderName>,
    /// Policies for `@policy`, and whether an unauthorized field refuses the whole
    /// operation. Default: no policies, unauthorized fields answered as `null`.
    pub authorization: Arc<AuthorizationSettings>,
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
    override_labels_header: Option<HeaderName>,
    authorization: Arc<AuthorizationSettings>,
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
            override_labels_header: features.override_labels_header,
            authorization: features.authorization,
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

/// What every subgraph hears about the client: its Gantry token (HTTP subgraphs verify it
/// again; an external provider's token stays here) and its address; the request id and
/// trace context, so the subgraphs' log lines of this request carry the same ones; the
/// client headers the header rules may send, and the claims they insert.
fn forwarded_headers(
    rules: &HeaderRules,
    headers: &HeaderMap,
    identity: &Identity,
    client: Option<ClientAddr>,
    request_id: &str,
) -> HeaderMap {
    let mut forwarded = rules.client_headers(headers);
    rules.add_claims(&mut forwarded, &identity.claims);
    forwarded.extend(crate::telemetry::correlation_headers(headers, request_id));
    let token = identity
        .gantry_token
        .as_deref()
        .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok());
    // Any other token reaches subgraphs only when a rule propagates `authorization`.
    if let Some(value) = token {
        forwarded.insert(AUTHORIZATION, value);
    }
    if let Some(value) = client.and_then(|c| HeaderValue::from_str(&c.0.to_string()).ok()) {
        forwarded.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    forwarded
}

impl GatewayService {
    /// Prepares the document of a request whose text the persisted-query step has filled
    /// in, on the current supergraph; `Err` is the response to send instead.
    async fn prepare(
        &self,
        request: &GraphQLRequest,
        context: &RequestContext,
    ) -> Result<Operation, Box<GraphQLResponse>> {
        let Some(query) = &request.query else {
            return Err(Box::new(persisted_query_not_found()));
        };
        let runtime = self.gateway.runtime();
        let labels = self.override_labels(runtime.supergraph(), &context.headers);
        match runtime
            .prepare_for(query, request.operation_name.as_deref(), &labels)
            .await
        {
            Ok(prepared) => Ok(Operation {
                gateway: self.gateway.clone(),
                runtime,
                prepared,
                denied: None,
            }),
            Err(refusal) => Err(Box::new(refused(&refusal, context))),
        }
    }

    /// The progressive override labels active for this request: `percent(x)` ones by a
    /// fresh draw, the others when named in the labels header.
    fn override_labels(&self, supergraph: &Supergraph, headers: &HeaderMap) -> ActiveLabels {
        let requested = self
            .override_labels_header
            .iter()
            .flat_map(|name| headers.get_all(name))
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        supergraph.override_labels().activate(requested)
    }

    /// Runs a prepared request: authentication, authorization, rate limits, then the
    /// request path through the response cache.
    async fn run(
        &self,
        mut operation: Operation,
        request: GraphQLRequest,
        context: &RequestContext,
    ) -> GraphQLResponse {
        if operation.prepared.kind == OperationKind::Subscription {
            return subscription_needs_a_stream();
        }
        let identity = match self.auth.authenticate(&context.headers).await {
            Ok(identity) => identity,
            Err(refusal) => return unauthenticated(refusal.to_string()),
        };
        let authorized = operation
            .runtime
            .authorize(&operation.prepared, &identity, &self.authorization)
            .await;
        match authorized {
            Ok(Authorized::Whole) => {}
            Ok(Authorized::Partly(denied)) => operation.denied = Some(denied),
            Ok(Authorized::Refused(errors)) => {
                return GraphQLResponse::request_errors(errors);
            }
            Err(error) => return refused(&error, context),
        }
        let viewer_id = identity.key;
        let requester = Requester {
            user: viewer_id,
            address: context.client_addr,
            headers: &context.headers,
        };
        let cost = self.rate_limited_cost(&operation, request.variables());
        if let Err(refusal) = self.rate_limits.admit(requester, cost).await {
            return *refusal;
        }
        let client = context.client_addr.map(ClientAddr);
        let deadline = self.request_timeout.map(|timeout| Instant::now() + timeout);
        let pipeline_context = pipeline::RequestContext {
            forwarded_headers: forwarded_headers(
                &self.header_rules,
                &context.headers,
                &identity,
                client,
                &context.request_id,
            ),
            context: Some(Arc::new(Caller {
                viewer: identity.viewer.clone(),
                client,
            })),
            request_id: Some(context.request_id.clone()),
            deadline,
        };
        // The operation's name for the access log and metrics, when the client sent none.
        let unnamed = request
            .operation_name
            .is_none()
            .then(|| operation.prepared.operation_name.clone())
            .flatten();
        if let Some(format) = incremental_format(&context.headers)
            && operation.prepared.defers
        {
            let _turn = self.caching.turn().await;
            let deferred = defer::run_deferred(
                &operation,
                request.variables(),
                pipeline_context.clone(),
                &identity,
                &self.authorization,
                format,
            )
            .await;
            if let Some(response) = deferred {
                let mut response = with_deadline_status(response);
                response.operation_name = unnamed;
                return response;
            }
        }
        let answer = self
            .caching
            .execute(operation, request, pipeline_context, viewer_id);
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
        response.operation_name = unnamed;
        response
    }

    /// What a cost rate limit charges the request: its estimated cost, or 1 when there is
    /// no cost limit or the estimate is over the maximum (the request path refuses it
    /// before anything runs).
    fn rate_limited_cost(
        &self,
        operation: &Operation,
        variables: &serde_json::Map<String, Value>,
    ) -> u32 {
        if !self.rate_limits.charges_cost() {
            return 1;
        }
        let cost = self.gateway.cost();
        let estimated = cost.estimate(
            operation.runtime.supergraph().costs(),
            operation.prepared.for_cost(),
            variables,
        );
        let max = cost.settings().max_operation_cost;
        match estimated {
            Ok(cost) if max == 0 || cost <= max => u32::try_from(cost).unwrap_or(u32::MAX),
            _ => 1,
        }
    }
}

/// A subscription sent as a plain HTTP request: it is a stream, so it needs a transport
/// that carries one.
fn subscription_needs_a_stream() -> GraphQLResponse {
    GraphQLResponse::request_error(
        "A subscription needs a streaming transport: a WebSocket (graphql-transport-ws), \
         server-sent events (Accept: text/event-stream) or multipart HTTP \
         (Accept: multipart/mixed)",
        "BAD_REQUEST",
    )
    .with_status(StatusCode::BAD_REQUEST)
}

/// A subscription the service admitted: its document resolved and prepared, its caller
/// verified and authorized, within the rate limits; what its events are resolved with.
#[derive(Debug)]
pub struct AdmittedSubscription {
    pub runtime: Arc<SupergraphRuntime>,
    pub prepared: Arc<PreparedOperation>,
    /// The caller may not see some fields: the plan without them, and the errors.
    pub denied: Option<Arc<Denied>>,
    pub identity: Identity,
    /// What every subgraph hears about the caller (the upstream subscription's
    /// `connection_init` too).
    pub context: pipeline::RequestContext,
    pub variables: serde_json::Map<String, Value>,
    /// The request, its text resolved, and where it came from: to prepare it again when
    /// the supergraph changes.
    request: GraphQLRequest,
    origin: RequestContext,
}

/// What a request on a streaming transport comes to.
#[derive(Debug)]
pub enum StreamAdmission {
    /// A subscription, to open.
    Subscription(Box<AdmittedSubscription>),
    /// A query or mutation: the transport answers with its one response.
    Single(Box<GraphQLResponse>),
}

impl GatewayService {
    /// Takes a request that arrived on a streaming transport (WebSocket, server-sent
    /// events, multipart) through the same steps as any request: persisted queries,
    /// preparation, authentication (the headers in `context`: the transport puts the
    /// token there), authorization and rate limits. A query or mutation simply runs.
    /// `Err` is the response that refuses it.
    pub async fn admit_stream(
        &self,
        mut request: GraphQLRequest,
        context: &RequestContext,
    ) -> Result<StreamAdmission, Box<GraphQLResponse>> {
        let resolved = self
            .persisted
            .peek(&mut request, &context.headers)
            .await
            .map_err(Box::new)?;
        let prepared = self.prepare(&request, context).await;
        let client = registering_client(context);
        self.persisted
            .settle(resolved, &request, &registrar(&client, prepared.is_ok()))
            .await;
        let operation = prepared?;
        if operation.prepared.kind != OperationKind::Subscription {
            let response = self.run(operation, request, context).await;
            return Ok(StreamAdmission::Single(Box::new(response)));
        }
        let identity = self
            .auth
            .authenticate(&context.headers)
            .await
            .map_err(|refusal| Box::new(unauthenticated(refusal.to_string())))?;
        let requester = Requester {
            user: identity.key,
            address: context.client_addr,
            headers: &context.headers,
        };
        self.rate_limits
            .admit(requester, 1)
            .await
            .map_err(|refusal| Box::new(*refusal))?;
        let admitted = self
            .authorized_subscription(operation, identity, request, context)
            .await?;
        Ok(StreamAdmission::Subscription(Box::new(admitted)))
    }

    /// `admitted` prepared again on the current supergraph, for the same caller: what a
    /// live subscription runs after a recomposition. `Err` (its field is gone, say) is
    /// the response that ends it.
    pub async fn readmit(
        &self,
        admitted: &AdmittedSubscription,
    ) -> Result<AdmittedSubscription, Box<GraphQLResponse>> {
        let operation = self.prepare(&admitted.request, &admitted.origin).await?;
        if operation.prepared.kind != OperationKind::Subscription {
            return Err(Box::new(GraphQLResponse::request_error(
                "The operation is no longer a subscription",
                "GRAPHQL_VALIDATION_FAILED",
            )));
        }
        self.authorized_subscription(
            operation,
            admitted.identity.clone(),
            admitted.request.clone(),
            &admitted.origin,
        )
        .await
    }

    /// The subscription with the fields `identity` may not see removed.
    async fn authorized_subscription(
        &self,
        mut operation: Operation,
        identity: Identity,
        request: GraphQLRequest,
        context: &RequestContext,
    ) -> Result<AdmittedSubscription, Box<GraphQLResponse>> {
        match operation
            .runtime
            .authorize(&operation.prepared, &identity, &self.authorization)
            .await
        {
            Ok(Authorized::Whole) => {}
            Ok(Authorized::Partly(denied)) => operation.denied = Some(denied),
            Ok(Authorized::Refused(errors)) => {
                return Err(Box::new(GraphQLResponse::request_errors(errors)));
            }
            Err(error) => return Err(Box::new(refused(&error, context))),
        }
        let client = context.client_addr.map(ClientAddr);
        let pipeline_context = pipeline::RequestContext {
            forwarded_headers: forwarded_headers(
                &self.header_rules,
                &context.headers,
                &identity,
                client,
                &context.request_id,
            ),
            context: Some(Arc::new(Caller {
                viewer: identity.viewer.clone(),
                client,
            })),
            request_id: Some(context.request_id.clone()),
            deadline: None,
        };
        Ok(AdmittedSubscription {
            runtime: operation.runtime,
            prepared: operation.prepared,
            denied: operation.denied,
            identity,
            context: pipeline_context,
            variables: request.variables.clone().unwrap_or_default(),
            request,
            origin: context.clone(),
        })
    }

    /// Verifies the headers' token again (a live subscription at its token's expiry).
    pub async fn reauthenticate(&self, headers: &HeaderMap) -> Result<Identity, String> {
        self.auth
            .authenticate(headers)
            .await
            .map_err(|refusal| refusal.to_string())
    }
}

/// The answer to a document that was not prepared: its errors, and `400` whatever the
/// media type when a limit refused it.
fn refused(refusal: &PrepareError, context: &RequestContext) -> GraphQLResponse {
    let errors = refusal.to_graphql_errors(Some(&context.request_id));
    let response = GraphQLResponse::request_errors(errors);
    if refusal.is_limit() {
        response.with_status(StatusCode::BAD_REQUEST)
    } else {
        response
    }
}

/// `504` when the deadline cut the operation short (whatever data was complete is in the
/// body); `400` when its estimated cost refused it (it never executed), whatever the media
/// type.
fn with_deadline_status(mut response: GraphQLResponse) -> GraphQLResponse {
    if response.has_error_code(GATEWAY_TIMEOUT) {
        response.http_status_hint = Some(StatusCode::GATEWAY_TIMEOUT);
    } else if !response.has_data() && response.has_error_code(COST_ESTIMATED_TOO_EXPENSIVE) {
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

fn persisted_query_not_found() -> GraphQLResponse {
    GraphQLResponse::request_error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
}

/// Who may register an APQ text: only a text the request path prepared (it parses,
/// validates and is within the limits), so registration never prepares anything itself.
fn registrar(client: &str, prepared: bool) -> Registrar<'_> {
    fn prepared_text(_: &str, _: Option<&str>) -> bool {
        true
    }
    fn refused_text(_: &str, _: Option<&str>) -> bool {
        false
    }
    Registrar {
        client,
        validates: if prepared {
            &prepared_text
        } else {
            &refused_text
        },
    }
}

#[async_trait]
impl OperationExecutor for GatewayService {
    async fn execute(
        &self,
        mut request: GraphQLRequest,
        context: &RequestContext,
    ) -> GraphQLResponse {
        let resolved = match self.persisted.peek(&mut request, &context.headers).await {
            Ok(resolved) => resolved,
            Err(refusal) => return refusal,
        };
        let prepared = self.prepare(&request, context).await;
        let client = registering_client(context);
        let registrar = registrar(&client, prepared.is_ok());
        self.persisted.settle(resolved, &request, &registrar).await;
        match prepared {
            Ok(operation) => self.run(operation, request, context).await,
            Err(refusal) => *refusal,
        }
    }

    async fn operation_kind(
        &self,
        request: &GraphQLRequest,
        context: &RequestContext,
    ) -> Result<OperationKind, GraphQLResponse> {
        let mut request = request.clone();
        let _unsettled = self.persisted.peek(&mut request, &context.headers).await?;
        match self.prepare(&request, context).await {
            Ok(operation) => Ok(operation.prepared.kind),
            Err(refusal) => Err(*refusal),
        }
    }

    /// Resolves the persisted query and prepares the document once, where the default
    /// would do both twice.
    async fn execute_get(
        &self,
        mut request: GraphQLRequest,
        context: &RequestContext,
    ) -> GetAnswer {
        let resolved = match self.persisted.peek(&mut request, &context.headers).await {
            Ok(resolved) => resolved,
            Err(refusal) => return GetAnswer::Response(Box::new(refusal)),
        };
        let operation = match self.prepare(&request, context).await {
            Ok(operation) => operation,
            Err(refusal) => return GetAnswer::Response(refusal),
        };
        if operation.prepared.kind == OperationKind::Mutation {
            return GetAnswer::MutationRefused;
        }
        let client = registering_client(context);
        let registrar = registrar(&client, true);
        self.persisted.settle(resolved, &request, &registrar).await;
        GetAnswer::Response(Box::new(self.run(operation, request, context).await))
    }
}

/// `GET /metrics` of a process serving `service`: the process's recorder, with the service's
/// own counters copied in at each scrape.
pub fn metrics_router(service: Arc<GatewayService>) -> axum::Router {
    gantry_kit::prometheus::handle();
    crate::telemetry::describe();
    gantry_kit::prometheus::router(Some(Arc::new(move || publish_metrics(&service))))
}

/// Copies what the service's parts count themselves into the recorder, for a scrape: the
/// caches' and de-duplication's counters, the persisted queries' and whether Redis answers.
fn publish_metrics(service: &GatewayService) {
    service.caching().metrics().publish();
    crate::telemetry::publish_lookup_ratios();
    for (name, value) in service.persisted().metrics() {
        metrics::counter!(format!("gantry_{name}_total")).absolute(value);
    }
    if let Some(redis) = service.shared_state() {
        metrics::gauge!("gantry_redis_up").set(f64::from(u8::from(redis.is_healthy())));
    }
}
