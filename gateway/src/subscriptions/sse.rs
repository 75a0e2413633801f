//! GraphQL over server-sent events (the `graphql-sse` protocol), distinct connections
//! mode: a `GET` or `POST` that accepts `text/event-stream` carries one operation and gets
//! its results as `next` events, then `complete`. A comment line is sent every heartbeat
//! so proxies keep the stream open; the subscription ends when the client disconnects.

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::routes::{StreamState, context, read_request};
use super::session::{self, Opened};

/// A `next` event around a response body.
fn next(body: &str) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event("next").data(body))
}

fn complete() -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event("complete").data(""))
}

pub(crate) async fn respond(state: StreamState, request: Request, request_id: String) -> Response {
    let headers = request.headers().clone();
    let (graphql, bare) = match read_request(&state.http, request).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    let context = context(&state.http, &bare, headers, request_id);
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        match session::open(&state.subscriptions, graphql, &context).await {
            Opened::Single(event) | Opened::Refused(event, _) => Box::pin(futures::stream::iter([
                next(&event.to_string()),
                complete(),
            ])),
            Opened::Stream(stream) => Box::pin(
                stream
                    .map(|payload| next(&payload))
                    .chain(futures::stream::once(async { complete() })),
            ),
        };
    let heartbeat = KeepAlive::new()
        .interval(state.subscriptions.settings.heartbeat)
        .text("");
    Sse::new(events).keep_alive(heartbeat).into_response()
}
