//! GraphQL over HTTP: the axum layer between a client and an [`OperationExecutor`].
//!
//! It knows the wire protocol (the GraphQL-over-HTTP spec and what the `graphql-http` audit
//! checks) and nothing about how an operation runs: the gateway's pipeline, or a test's stub
//! schema, plugs in behind the [`OperationExecutor`] trait.
//!
//! What it does, top to bottom:
//! - `POST {path}` with an `application/json` body: one request object, or a JSON array of
//!   them (a batch, answered with an array of results, at most
//!   [`HttpSettings::max_batch_size`] items).
//! - `GET {path}?query=…&operationName=…&variables=…&extensions=…&documentId=…`; a mutation
//!   over GET is refused with `405` and `Allow: POST`, so GETs stay safe to cache.
//! - The response media type follows `Accept`: `application/graphql-response+json` when the
//!   client names it, `application/json` when it names that, sends `*/*` or no `Accept`
//!   (as the audit expects), `406` when it accepts neither (nor `multipart/mixed`).
//! - An incrementally delivered response (`@defer`, see [`GraphQLResponse::incremental`])
//!   goes out as `multipart/mixed`, each payload in its own part as soon as it is ready
//!   (never compressed, which would hold parts back), in the format `Accept` chose
//!   ([`IncrementalFormat`]).
//! - Status codes: with `application/graphql-response+json` a request that never executed
//!   (no `data` entry: parse, validation or variable errors) gets `400`, one that executed
//!   gets `200`; with `application/json` every GraphQL response gets `200`. A malformed body,
//!   a missing `query`, a parameter of the wrong type → `400`; a body larger than
//!   [`HttpSettings::max_body_bytes`] → `413`; a body that is not `application/json` → `415`.
//! - gzip and brotli response compression, and an `x-request-id` on every response (the
//!   client's, when it sent a sane one; a fresh UUIDv7 otherwise).
//! - A browser (`GET {path}` with `Accept: text/html`) and `GET /` get the GraphiQL
//!   [`playground`](crate::playground).
//!
//! # Layout
//!
//! - [`settings`]: [`HttpSettings`], every default documented.
//! - `media`: `Accept` negotiation and the request `Content-Type` check.
//! - `request`: reading a POST body or GET query string into [`GraphQLRequest`]s.
//! - `response`: [`GraphQLResponse`] (the gateway's one response type, from
//!   [`crate::graphql`]) → HTTP response, with the status rules in one place.
//! - `request_id`: the `x-request-id` middleware.
//! - `handler`: the axum handlers that run the steps above.

mod handler;
mod media;
pub(crate) mod request;
pub(crate) mod request_id;
mod response;
pub mod settings;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::http::{HeaderMap, Method};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};

pub use crate::graphql_http::media::{ResponseMediaType, incremental_format};
pub use crate::graphql_http::request_id::REQUEST_ID_HEADER;
pub use crate::graphql_http::settings::HttpSettings;
use crate::playground;

pub use crate::graphql::{
    GraphQLRequest, GraphQLResponse, IncrementalFormat, IncrementalParts, ResponseBody,
};

/// What the HTTP layer knows about the request that the executor may need (auth headers,
/// the id to log with, the client address for rate limits).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub method: Method,
    pub headers: HeaderMap,
    /// The `x-request-id` this response carries.
    pub request_id: String,
    /// The client's address: the TCP peer, or what trusted proxies forwarded (see
    /// [`HttpSettings::trusted_proxies`]). Present when the server was started with connect
    /// info (see [`serve`]).
    pub client_addr: Option<IpAddr>,
}

pub use crate::graphql::OperationKind;

/// Runs GraphQL operations for the HTTP layer. The gateway implements it over its
/// pipeline; tests implement it over a small async-graphql schema.
#[async_trait]
pub trait OperationExecutor: Send + Sync + 'static {
    /// Runs one request. Errors go in the body (see [`GraphQLResponse::body`]); this never
    /// fails at the HTTP level except through [`GraphQLResponse::http_status_hint`].
    async fn execute(&self, request: GraphQLRequest, context: &RequestContext) -> GraphQLResponse;

    /// Which kind of operation the request selects, without running it. Called for GET
    /// requests only, to refuse mutations before they run. `Err` is the response to send
    /// instead (a parse error, an unknown persisted query, an unknown operation name).
    async fn operation_kind(
        &self,
        request: &GraphQLRequest,
        context: &RequestContext,
    ) -> Result<OperationKind, GraphQLResponse>;

    /// Runs a GET request: [`execute`](Self::execute), but a mutation is refused before it
    /// runs. The default asks [`operation_kind`](Self::operation_kind) first; an executor
    /// that can tell the kind on its way to running the request overrides it to look the
    /// request up once.
    async fn execute_get(&self, request: GraphQLRequest, context: &RequestContext) -> GetAnswer {
        match self.operation_kind(&request, context).await {
            Err(refusal) => GetAnswer::Response(Box::new(refusal)),
            Ok(OperationKind::Mutation) => GetAnswer::MutationRefused,
            Ok(OperationKind::Query | OperationKind::Subscription) => {
                GetAnswer::Response(Box::new(self.execute(request, context).await))
            }
        }
    }
}

/// What a GET request comes to.
#[derive(Debug)]
pub enum GetAnswer {
    Response(Box<GraphQLResponse>),
    /// A mutation: answered `405` with `Allow: POST`, nothing ran.
    MutationRefused,
}

/// The GraphQL endpoint (`GET`/`POST` [`HttpSettings::path`]), the playground (`GET /` and
/// its assets under `/playground/`), compression and request ids. Mount it at the root:
/// the playground page refers to its assets by absolute path.
pub fn router(executor: Arc<dyn OperationExecutor>, settings: HttpSettings) -> Router {
    let settings = Arc::new(settings);
    let state = handler::HttpState {
        executor,
        settings: settings.clone(),
        playground: Arc::new(playground::PlaygroundPage::new(
            &settings.playground,
            &settings.path,
        )),
    };
    let mut router = Router::new().route(
        &settings.path,
        get(handler::graphql_get).post(handler::graphql_post),
    );
    if settings.playground.enabled {
        router = router
            .route("/", get(handler::playground_page))
            .merge(playground::assets_router());
    }
    let router = router.with_state(state);
    let router = if settings.compression {
        // An incremental response is sent part by part: a compressor would hold the parts
        // back until it had enough to compress.
        let predicate =
            DefaultPredicate::new().and(NotForContentType::const_new("multipart/mixed"));
        router.layer(CompressionLayer::new().compress_when(predicate))
    } else {
        router
    };
    router.layer(axum::middleware::from_fn(request_id::request_id))
}

/// Serves `app` on `listener` until `shutdown` resolves, with the client address available
/// to [`RequestContext::client_addr`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
