//! GraphQL response → HTTP response. The status code rules of GraphQL over HTTP live here
//! and nowhere else.

use axum::body::{Body, Bytes};
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;

use crate::graphql::{GraphQLResponse, IncrementalFormat, ResponseBody};
use crate::graphql_http::media::ResponseMediaType;

/// The `extensions.code` of errors about the HTTP request itself (not GraphQL).
pub const BAD_REQUEST_CODE: &str = "BAD_REQUEST";

/// The status for one GraphQL response:
/// - the executor's [`GraphQLResponse::http_status_hint`], when it set one;
/// - `application/json`: `200`, whatever the errors (the legacy contract);
/// - `application/graphql-response+json`: `200` when the operation executed (a `data`
///   entry, even `null`), `400` when it never did (errors and no `data`).
pub fn status_for(response: &GraphQLResponse, media: ResponseMediaType) -> StatusCode {
    if let Some(status) = response.http_status_hint {
        return status;
    }
    match media {
        ResponseMediaType::Json => StatusCode::OK,
        ResponseMediaType::GraphQLResponseJson if response.has_data() => StatusCode::OK,
        ResponseMediaType::GraphQLResponseJson => StatusCode::BAD_REQUEST,
    }
}

/// The body as it goes on the wire: a written one as it is, one of values written now;
/// `500` when that fails.
fn body_response(status: StatusCode, media: ResponseMediaType, body: ResponseBody) -> Response {
    match body.into_bytes() {
        Ok(bytes) => bytes_response(status, media, bytes),
        Err(error) => {
            tracing::error!(%error, "serializing a GraphQL response failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn bytes_response(status: StatusCode, media: ResponseMediaType, bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
    // The media type (and so the status) depends on Accept: caches must key on it.
    headers.insert(VARY, HeaderValue::from_static("accept"));
    response
}

/// The HTTP response for one executed (or refused) GraphQL request; `multipart/mixed` when
/// it is delivered incrementally.
pub fn single(mut response: GraphQLResponse, media: ResponseMediaType) -> Response {
    let parts = response
        .incremental
        .take()
        .and_then(|parts| Some((parts.format, parts.take()?)));
    let status = status_for(&response, media);
    let mut http = match parts {
        Some((format, parts)) => multipart(format, &response.body, parts),
        None => body_response(status, media, response.body),
    };
    let headers = http.headers_mut();
    if let Some(policy) = response
        .cache_control
        .as_deref()
        .and_then(|policy| HeaderValue::from_str(policy).ok())
    {
        headers.insert(CACHE_CONTROL, policy);
    }
    for (name, value) in &response.extra_headers {
        headers.append(name, value.clone());
    }
    http
}

/// One part of a `multipart/mixed` body: its headers, the payload `write` writes, and the
/// boundary after it (the body starts with the first boundary).
fn part(write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) -> Bytes {
    let mut bytes = b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n".to_vec();
    if let Err(error) = write(&mut bytes) {
        tracing::error!(%error, "serializing an incremental payload failed");
        bytes.extend_from_slice(b"{\"hasNext\":false}");
    }
    bytes.extend_from_slice(b"\r\n--");
    bytes.extend_from_slice(IncrementalFormat::BOUNDARY.as_bytes());
    Bytes::from(bytes)
}

/// An incrementally delivered response: `first`, then each later payload as it comes, each
/// in its own part, written as soon as it is ready; `200` (errors are in the payloads).
fn multipart(
    format: IncrementalFormat,
    first: &ResponseBody,
    later: BoxStream<'static, Value>,
) -> Response {
    let opening = Bytes::from(format!("\r\n--{}", IncrementalFormat::BOUNDARY));
    let first = part(|out| first.write_to(out));
    let chunks = stream::iter([opening, first])
        .chain(later.map(|payload| part(|out| serde_json::to_writer(out, &payload))))
        .chain(stream::once(async { Bytes::from_static(b"--\r\n") }))
        .map(Ok::<_, std::convert::Infallible>);
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(VARY, HeaderValue::from_static("accept"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The HTTP response for a batch: an array of bodies in request order, `200` (each item
/// carries its own errors). No `Cache-Control`: batches are POSTs.
pub fn batch(responses: Vec<GraphQLResponse>, media: ResponseMediaType) -> Response {
    let mut extra = Vec::new();
    let mut array = vec![b'['];
    for (index, response) in responses.into_iter().enumerate() {
        extra.extend(
            response
                .extra_headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        if index > 0 {
            array.push(b',');
        }
        // A written item (a cached one, say) goes in as the bytes it was written as.
        if let Err(error) = response.body.write_to(&mut array) {
            tracing::error!(%error, "serializing a GraphQL response failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    array.push(b']');
    let mut http = bytes_response(StatusCode::OK, media, Bytes::from(array));
    for (name, value) in extra {
        http.headers_mut().append(name, value);
    }
    http
}

/// A refusal of the HTTP request itself (bad body, wrong method, media type, size), with a
/// GraphQL-shaped body so clients read every error the same way.
pub fn protocol_error(
    status: StatusCode,
    media: ResponseMediaType,
    message: impl std::fmt::Display,
) -> Response {
    let body = GraphQLResponse::request_error(message.to_string(), BAD_REQUEST_CODE).body;
    body_response(status, media, body)
}

/// `405` for a mutation over GET: only POST may change data.
pub fn mutation_over_get(media: ResponseMediaType) -> Response {
    let mut response = protocol_error(
        StatusCode::METHOD_NOT_ALLOWED,
        media,
        "Mutations are only accepted over POST",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use ResponseMediaType::{GraphQLResponseJson, Json};

    #[test]
    fn a_request_error_is_400_under_graphql_response_json_and_200_under_json() {
        let refused = GraphQLResponse::request_error("Syntax error", "GRAPHQL_PARSE_FAILED");
        assert_eq!(
            status_for(&refused, GraphQLResponseJson),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_for(&refused, Json), StatusCode::OK);
    }

    #[test]
    fn an_executed_operation_is_200_even_with_null_data_and_errors() {
        let executed = GraphQLResponse::new(json!({"data": null, "errors": [{"message": "x"}]}));
        assert_eq!(status_for(&executed, GraphQLResponseJson), StatusCode::OK);
        assert_eq!(status_for(&executed, Json), StatusCode::OK);
    }

    #[test]
    fn the_executors_status_hint_wins() {
        let limited = GraphQLResponse::request_error("Slow down", "RATE_LIMITED")
            .with_status(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_for(&limited, Json), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status_for(&limited, GraphQLResponseJson),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
