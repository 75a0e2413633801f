//! Which requests on the GraphQL endpoint go to a client transport of subscriptions: a
//! WebSocket upgrade; a request that accepts `text/event-stream`; a `PUT`, a `DELETE`, or
//! any request with an event stream's reservation token (server-sent events, single
//! connection mode); or one that accepts Apollo's `multipart/mixed` with
//! `subscriptionSpec`. Everything else goes on to GraphQL over HTTP untouched. The layer sits outside compression (a compressed stream would be
//! held back) and gives each request its `x-request-id` the way the HTTP layer does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{ACCEPT, CONNECTION, CONTENT_TYPE, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Subscriptions;
use crate::graphql_http::request::{self, PostBody};
use crate::graphql_http::request_id::{REQUEST_ID_HEADER, id_for};
use crate::graphql_http::{GraphQLRequest, HttpSettings, RequestContext};

/// What the layer needs: the subscriptions, and the HTTP settings of the endpoint.
#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub subscriptions: Arc<Subscriptions>,
    pub http: Arc<HttpSettings>,
}

/// `router` (the GraphQL-over-HTTP router) with the subscription transports on its
/// GraphQL path.
pub fn with_subscriptions(
    router: Router,
    subscriptions: Arc<Subscriptions>,
    http: &HttpSettings,
) -> Router {
    let state = StreamState {
        subscriptions,
        http: Arc::new(http.clone()),
    };
    router.layer(axum::middleware::from_fn_with_state(state, intercept))
}

/// Which transport a request asks for.
enum Transport {
    WebSocket,
    Sse,
    /// Single connection mode: reserve a stream.
    SseReserve,
    /// Single connection mode: open the stream the token reserved.
    SseStream(String),
    /// Single connection mode: an operation onto the stream the token names.
    SseOperation(String),
    /// Single connection mode: stop an operation (without a token: no stream to look in).
    SseStop(Option<String>),
    Multipart,
}

fn accepts(headers: &HeaderMap, needle: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains(needle))
}

fn transport(request: &Request) -> Option<Transport> {
    let headers = request.headers();
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("upgrade"));
    let token = super::event_streams::token_of(request);
    match (request.method().clone(), token) {
        (Method::GET, _) if upgrade && connection_upgrade => Some(Transport::WebSocket),
        (Method::PUT, _) => Some(Transport::SseReserve),
        (Method::DELETE, token) => Some(Transport::SseStop(token)),
        (Method::GET | Method::POST, Some(token)) if accepts(headers, "text/event-stream") => {
            Some(Transport::SseStream(token))
        }
        (Method::GET | Method::POST, Some(token)) => Some(Transport::SseOperation(token)),
        (method, None) => plain_transport(&method, headers),
        _ => None,
    }
}

/// The transport of a request without a reservation token.
fn plain_transport(method: &Method, headers: &HeaderMap) -> Option<Transport> {
    match *method {
        Method::GET | Method::POST if accepts(headers, "text/event-stream") => Some(Transport::Sse),
        Method::POST
            if accepts(headers, "multipart/mixed") && accepts(headers, "subscriptionspec") =>
        {
            Some(Transport::Multipart)
        }
        _ => None,
    }
}

async fn intercept(State(state): State<StreamState>, request: Request, next: Next) -> Response {
    if request.uri().path() != state.http.path {
        return next.run(request).await;
    }
    let Some(transport) = transport(&request) else {
        return next.run(request).await;
    };
    let request_id = id_for(request.headers());
    let mut response = match transport {
        Transport::WebSocket => super::ws::upgrade(state, request, request_id.clone()).await,
        Transport::Sse => super::sse::respond(state, request, request_id.clone()).await,
        Transport::SseReserve => super::event_streams::reserve(state, request).await,
        Transport::SseStream(token) => super::event_streams::open(state, request, token).await,
        Transport::SseOperation(token) => {
            super::event_streams::operation(state, request, token, request_id.clone()).await
        }
        Transport::SseStop(Some(token)) => super::event_streams::stop(state, request, token).await,
        Transport::SseStop(None) => super::event_streams::not_found(),
        Transport::Multipart => super::multipart::respond(state, request, request_id.clone()).await,
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// What the gateway service needs to know about the request.
pub(crate) fn context<B>(
    http: &HttpSettings,
    request: &axum::http::Request<B>,
    headers: HeaderMap,
    request_id: String,
) -> RequestContext {
    RequestContext {
        method: request.method().clone(),
        client_addr: client_addr(http, request),
        headers,
        request_id,
    }
}

/// The client's address, as every other limit finds it: the TCP peer, or the client a
/// trusted proxy forwards for.
pub(crate) fn client_addr<B>(
    http: &HttpSettings,
    request: &axum::http::Request<B>,
) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| {
            http.trusted_proxies
                .client_of(info.0.ip(), request.headers())
                .0
        })
}

/// A protocol error before any stream began: `400` with a GraphQL error body.
pub(crate) fn bad_request(message: impl std::fmt::Display) -> Response {
    let body = json!({ "errors": [{
        "message": message.to_string(),
        "extensions": { "code": "BAD_REQUEST" }
    }] });
    (
        StatusCode::BAD_REQUEST,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The GraphQL request of a GET (query string) or POST (JSON body, no batch) on a
/// streaming transport; `Err` is the response refusing it.
pub(crate) async fn read_request(
    http: &HttpSettings,
    request: Request,
) -> Result<(GraphQLRequest, Request<()>), Response> {
    let (parts, body) = request.into_parts();
    let bare = Request::from_parts(parts, ());
    if bare.method() == Method::GET {
        let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(bare.uri())
            .map_err(|rejection| bad_request(rejection.body_text()))?;
        let graphql = request::parse_get_params(params).map_err(bad_request)?;
        return Ok((graphql, bare));
    }
    let bytes = to_bytes(Body::new(body), http.max_body_bytes)
        .await
        .map_err(|error| bad_request(format!("The request body could not be read: {error}")))?;
    match request::parse_post_body(&bytes, 0).map_err(bad_request)? {
        PostBody::Single(graphql) => Ok((graphql, bare)),
        PostBody::Batch(_) => Err(bad_request("A stream carries one operation, not a batch")),
    }
}
