//! Apollo's multipart HTTP subscriptions: a `POST` that accepts
//! `multipart/mixed; subscriptionSpec="1.0"` gets `multipart/mixed; boundary="graphql"`,
//! one JSON part per event as `{"payload": {data, errors}}`, a `{}` part every heartbeat,
//! and the closing boundary when the subscription ends. The body opens with a boundary and
//! every part is written with the boundary after it: a client reads a part once the
//! boundary that ends it has come, so that boundary goes out with the part, not with the
//! next event. A query or mutation sent this way is answered as plain JSON.

use std::time::Duration;

use super::hub::Payload;
use super::routes::{StreamState, context, read_request};
use super::session::{self, Opened};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

const CONTENT: &str = "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"";
const OPENING: &[u8] = b"\r\n--graphql";
/// What closes the last boundary.
const END: &[u8] = b"--\r\n";

/// One part: its headers, `json`, and the boundary that ends it.
fn part(json: &str) -> Bytes {
    Bytes::from(format!(
        "\r\ncontent-type: application/json\r\n\r\n{json}\r\n--graphql"
    ))
}

/// The part of one event: `{"payload": …}` around a response body serialized once for
/// every client subscription that receives it.
fn event_part(payload: &str) -> Bytes {
    Bytes::from(format!(
        "\r\ncontent-type: application/json\r\n\r\n{{\"payload\":{payload}}}\r\n--graphql"
    ))
}

/// The events as parts, with a heartbeat part whenever none came for `every`.
fn parts(
    events: impl Stream<Item = Payload> + Send + 'static,
    every: Duration,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let events = events.map(|payload| event_part(&payload));
    let events = Box::pin(events);
    let opening = futures::stream::once(async { Bytes::from_static(OPENING) });
    let parts = futures::stream::unfold(Some(events), move |events| async move {
        let mut events = events?;
        let bytes = tokio::select! {
            event = events.next() => match event {
                Some(bytes) => bytes,
                None => return Some((Bytes::from_static(END), None)),
            },
            () = tokio::time::sleep(every) => part("{}"),
        };
        Some((bytes, Some(events)))
    });
    opening.chain(parts).map(Ok)
}

pub(crate) async fn respond(state: StreamState, request: Request, request_id: String) -> Response {
    let headers = request.headers().clone();
    let (graphql, bare) = match read_request(&state.http, request).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    let context = context(&state.http, &bare, headers, request_id);
    match session::open(&state.subscriptions, graphql, &context).await {
        Opened::Single(event) | Opened::Refused(event, _) => {
            ([(CONTENT_TYPE, "application/json")], event.to_string()).into_response()
        }
        Opened::Stream(stream) => (
            [(CONTENT_TYPE, CONTENT), (CACHE_CONTROL, "no-cache")],
            Body::from_stream(parts(stream, state.subscriptions.settings.heartbeat)),
        )
            .into_response(),
    }
}
