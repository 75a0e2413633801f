//! Serving: the GraphQL endpoint of a subgraph that turns HTTP credentials into a
//! [`ViewerState`] and the client address, `/health`, request ids, tracing, and the server
//! every command runs, with its connection and request limits and a graceful stop that
//! finishes in-flight requests within a bounded time.
//!
//! # Layout
//! - [`app`]: [`App`], a built server with its background tasks, and [`App::run`], how
//!   every server command runs.
//! - [`limits`]: [`ServerLimits`], every default documented.
//! - [`readiness`]: `GET /ready`, from the checks a server is built with.
//! - [`connection`]: the accept loop (connection cap, idle and header-read timeouts).
//! - [`tls`]: [`ServerTls`], the certificate and key of a server that speaks TLS, with
//!   HTTP/2 and HTTP/1.1 offered by ALPN.
//! - [`body`]: request bodies under a deadline and a budget of bytes held at once.
//! - [`access_log`]: one log line per request, and the request metrics.
//! - [`labels`]: metric label values from clients, bounded.
//! - [`trace_context`]: a `traceparent` for every request, made at the edge when missing.
//! - [`subscriptions`]: subscriptions over WebSocket on a subgraph's GraphQL path, and
//!   how a connection says who is asking.
//! - this file: the subgraph GraphQL handler, the common layers, [`serve`].

pub mod access_log;
pub mod app;
pub mod body;
pub mod connection;
pub mod labels;
pub mod limits;
pub mod readiness;
pub mod subscriptions;
pub mod tls;
pub mod trace_context;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{ObjectType, Schema, SubscriptionType};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::{ConnectInfo, FromRequest, State};
use axum::http::{HeaderMap, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use self::app::{App, BackgroundTasks, RunError, place_metrics};
pub use self::body::BodyLimits;
pub use self::limits::ServerLimits;
pub use self::subscriptions::SubscriptionEndpoint;
pub use self::tls::{ServerTls, ServerTlsError, ServerTlsFiles};
use crate::client::TrustedProxies;
use crate::jwt::TokenVerifier;
use crate::viewer::ViewerState;

/// What the GraphQL handler needs besides the schema.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    pub verifier: Arc<TokenVerifier>,
    /// Peers whose `X-Forwarded-For` names the client: the gateways.
    pub trusted_proxies: TrustedProxies,
}

struct GraphqlState<Q, M, S> {
    schema: Schema<Q, M, S>,
    auth: HttpAuth,
    subscriptions: SubscriptionEndpoint,
}

/// `POST /graphql` and `GET /graphql` for `schema`, with the viewer and client address
/// put into each request's data; a `GET` that asks for a WebSocket serves subscriptions
/// (see [`subscriptions`]).
pub fn graphql_router<Q, M, S>(
    schema: Schema<Q, M, S>,
    auth: HttpAuth,
    subscriptions: SubscriptionEndpoint,
) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let state = Arc::new(GraphqlState {
        schema,
        auth,
        subscriptions,
    });
    Router::new()
        .route(
            "/graphql",
            get(graphql_get::<Q, M, S>).post(graphql_post::<Q, M, S>),
        )
        .with_state(state)
}

#[tracing::instrument(skip_all)]
async fn graphql_post<Q, M, S>(
    State(state): State<Arc<GraphqlState<Q, M, S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    execute(&state, peer, &headers, request).await
}

/// A query in the URL, or the upgrade to a subscription WebSocket.
#[tracing::instrument(skip_all)]
async fn graphql_get<Q, M, S>(
    State(state): State<Arc<GraphqlState<Q, M, S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let (parts, body) = request.into_parts();
    if subscriptions::is_upgrade(&parts.headers) {
        return subscriptions::upgrade(
            state.schema.clone(),
            state.auth.clone(),
            state.subscriptions.clone(),
            peer.ip(),
            parts,
        )
        .await;
    }
    let headers = parts.headers.clone();
    let request = axum::extract::Request::from_parts(parts, body);
    match GraphQLRequest::<GraphQLRejection>::from_request(request, &()).await {
        Ok(request) => execute(&state, peer, &headers, request)
            .await
            .into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn execute<Q, M, S>(
    state: &GraphqlState<Q, M, S>,
    peer: SocketAddr,
    headers: &HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let viewer = ViewerState::from_headers(headers, &state.auth.verifier);
    let client = state.auth.trusted_proxies.client_of(peer.ip(), headers);
    let request = request.into_inner().data(viewer).data(client);
    state.schema.execute(request).await.into()
}

/// Adds `/health`, request ids (`x-request-id`, generated when the client sent none), a
/// `traceparent` (likewise), request tracing and the access log to a router. A `5xx` answer
/// is logged as an ERROR, except `503`: that is a deliberate "not now" (`/ready` while a
/// dependency is down, shed load), whose cause is logged where it was decided, once, rather
/// than at every probe.
///
/// Every log line of a request is inside its `request` span, which carries the request id
/// and the trace id: the ones the gateway forwards to the subgraphs, so a request's lines in
/// every process share them.
pub fn with_common_layers(router: Router) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(axum::middleware::from_fn(access_log::access_log))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            let id = header("x-request-id").unwrap_or("-");
            let trace_id = header(trace_context::TRACEPARENT)
                .and_then(trace_context::trace_id)
                .unwrap_or("-");
            let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id, trace_id = %trace_id);
            trace_context::adopt(&span, req.headers());
            span
        }).on_failure(log_failure))
        .layer(axum::middleware::from_fn(trace_context::ensure_traceparent))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503");
        }
        class => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
}

/// `GET /metrics` of a process that serves no gateway: what it recorded (SQL statements,
/// requests), see [`crate::prometheus`].
pub fn with_metrics(router: Router) -> Router {
    router.merge(crate::prometheus::router(None))
}

/// Adds the request limits every server command applies: bodies read within
/// [`ServerLimits::body_read_timeout`] and [`ServerLimits::body_bytes_in_flight`], at most
/// `max_body_bytes` each. `deadline` also bounds each answer by
/// [`ServerLimits::request_timeout`] (`504`); the gateway passes `false` and answers its
/// own deadline with the data that is complete.
pub fn with_request_limits(
    router: Router,
    limits: &ServerLimits,
    max_body_bytes: usize,
    deadline: bool,
) -> Router {
    let bodies = BodyLimits::new(
        limits.body_bytes_in_flight,
        max_body_bytes,
        limits.body_read_timeout,
    );
    let router = if deadline {
        router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            limits.request_timeout,
        ))
    } else {
        router
    };
    router.layer(axum::middleware::from_fn_with_state(
        bodies,
        body::hold_body,
    ))
}

/// Serves `router` on `listener` until `shutdown` completes, within `limits` (see
/// [`connection::serve_connections`]), then stops accepting and waits at most
/// [`ServerLimits::shutdown_grace`] for in-flight requests. With `tls`, over TLS only
/// (HTTP/2 or HTTP/1.1 by ALPN); without, plain HTTP/1.1 and HTTP/2 (h2c).
pub fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &ServerLimits,
    tls: Option<ServerTls>,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let limits = limits.clone();
    async move { connection::serve_connections(listener, router, shutdown, &limits, tls).await }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("stop requested; finishing in-flight requests");
}
