//! The axum handlers: read the request, ask the executor, answer per the protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use futures::future::join_all;
use gantry_kit::server::access_log::OperationName;

use crate::graphql_http::media::{self, ResponseMediaType};
use crate::graphql_http::request::{self, PostBody, RequestError};
use crate::graphql_http::request_id::RequestId;
use crate::graphql_http::response::{self, BAD_REQUEST_CODE};
use crate::graphql_http::{
    GetAnswer, GraphQLResponse, HttpSettings, OperationExecutor, RequestContext,
};
use crate::playground::PlaygroundPage;

#[derive(Clone)]
pub struct HttpState {
    pub executor: Arc<dyn OperationExecutor>,
    pub settings: Arc<HttpSettings>,
    pub playground: Arc<PlaygroundPage>,
}

/// What the executor needs to know about the request; the client address is decided here,
/// once, from the TCP peer and the trusted proxies' forwarding headers.
fn context(
    settings: &HttpSettings,
    method: Method,
    headers: HeaderMap,
    request: &Request,
) -> RequestContext {
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| settings.trusted_proxies.client_of(info.0.ip(), &headers).0);
    RequestContext {
        method,
        headers,
        request_id: request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default(),
        client_addr,
    }
}

fn not_acceptable() -> Response {
    response::protocol_error(
        StatusCode::NOT_ACCEPTABLE,
        ResponseMediaType::Json,
        "Acceptable response types: application/graphql-response+json, application/json",
    )
}

fn bad_request(media: ResponseMediaType, error: &RequestError) -> Response {
    response::protocol_error(StatusCode::BAD_REQUEST, media, error)
}

/// `GET /`: the playground.
pub async fn playground_page(State(state): State<HttpState>) -> Response {
    state.playground.response()
}

/// `GET {path}`: the playground for a browser, otherwise a query from the query string.
#[tracing::instrument(skip_all)]
pub async fn graphql_get(State(state): State<HttpState>, request: Request) -> Response {
    let headers = request.headers().clone();
    if state.settings.playground.enabled && media::wants_html(&headers) {
        return state.playground.response();
    }
    let Some(media) = media::negotiate(&headers) else {
        return not_acceptable();
    };
    let params = match Query::<Vec<(String, String)>>::try_from_uri(request.uri()) {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return response::protocol_error(StatusCode::BAD_REQUEST, media, rejection.body_text());
        }
    };
    let graphql_request = match request::parse_get_params(params) {
        Ok(graphql_request) => graphql_request,
        Err(error) => return bad_request(media, &error),
    };
    let context = context(&state.settings, Method::GET, headers, &request);
    let sent = graphql_request.operation_name.clone();
    match state.executor.execute_get(graphql_request, &context).await {
        GetAnswer::Response(answer) => {
            let operation = operation_name(sent, &answer);
            with_operation(response::single(*answer, media), operation)
        }
        GetAnswer::MutationRefused => with_operation(
            response::mutation_over_get(media),
            OperationName(sent.unwrap_or_default()),
        ),
    }
}

/// The operation name the access log and the request metrics show: the one the client
/// sent, else the one the executor found in the document.
fn operation_name(sent: Option<String>, answer: &GraphQLResponse) -> OperationName {
    OperationName(
        sent.or_else(|| answer.operation_name.clone())
            .unwrap_or_default(),
    )
}

/// A batch is logged and counted as one request, under this name.
const BATCH_OPERATION: &str = "(batch)";

fn with_operation(mut response: Response, operation: OperationName) -> Response {
    response.extensions_mut().insert(operation);
    response
}

/// `POST {path}`: one request or a batch in a JSON body.
#[tracing::instrument(skip_all)]
pub async fn graphql_post(State(state): State<HttpState>, request: Request) -> Response {
    let headers = request.headers().clone();
    let Some(media) = media::negotiate(&headers) else {
        return not_acceptable();
    };
    if let Err(error) = media::check_content_type(&headers) {
        return response::protocol_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, media, error);
    }
    let limit = state.settings.max_body_bytes;
    let declared_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return too_large(media, limit);
    }
    let context = context(&state.settings, Method::POST, headers, &request);
    let body = match read_body(request.into_body(), limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(media, limit),
        Err(BodyError::Unreadable(error)) => {
            return response::protocol_error(
                StatusCode::BAD_REQUEST,
                media,
                format!("The request body could not be read: {error}"),
            );
        }
    };
    match request::parse_post_body(&body, state.settings.max_batch_size) {
        Err(error) => bad_request(media, &error),
        Ok(PostBody::Single(graphql_request)) => {
            let sent = graphql_request.operation_name.clone();
            let answer = state.executor.execute(graphql_request, &context).await;
            let operation = operation_name(sent, &answer);
            with_operation(response::single(answer, media), operation)
        }
        Ok(PostBody::Batch(items)) => {
            // A batch is one JSON array: its items are answered whole, `@defer` or not.
            let mut context = context;
            context.headers.insert(
                ACCEPT,
                axum::http::HeaderValue::from_static(media.content_type()),
            );
            // Items run concurrently, as independent requests; a client that needs one
            // mutation to see another's effect sends them separately.
            let responses = join_all(items.into_iter().map(|item| {
                let executor = state.executor.clone();
                let context = &context;
                async move {
                    match item {
                        Ok(graphql_request) => executor.execute(graphql_request, context).await,
                        Err(error) => {
                            GraphQLResponse::request_error(error.to_string(), BAD_REQUEST_CODE)
                        }
                    }
                }
            }))
            .await;
            with_operation(
                response::batch(responses, media),
                OperationName(BATCH_OPERATION.to_owned()),
            )
        }
    }
}

fn too_large(media: ResponseMediaType, limit: usize) -> Response {
    response::protocol_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        media,
        format!("The request body is larger than {limit} bytes"),
    )
}

enum BodyError {
    TooLarge,
    Unreadable(axum::Error),
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::iter::successors(
            Some(&error as &(dyn std::error::Error + 'static)),
            |error| error.source(),
        )
        .any(|error| error.is::<http_body_util::LengthLimitError>());
        if too_large {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(error)
        }
    })
}
