//! `graphql-transport-ws` on the GraphQL endpoint (the protocol of the `graphql-ws` client):
//!
//! - the client offers the `graphql-transport-ws` subprotocol (else `4406`) and sends
//!   `connection_init` within [`SubscriptionSettings::init_timeout`] (else `4408`); its
//!   payload's string entries are read as request headers, so the token goes in
//!   `{"Authorization": "Bearer …"}` (or `authorization`). A token that does not verify
//!   closes the connection with `4403`; a second `connection_init` with `4429`;
//! - `subscribe` before `connection_ack` closes with `4401`, a malformed message with
//!   `4400`, an id already in use with `4409`;
//! - each `subscribe` runs the operation like any request (queries and mutations too):
//!   `next` per result, then `complete`; a refusal is an `error` message; a client's
//!   `complete` ends that subscription; more than
//!   [`SubscriptionSettings::max_per_connection`] at once is refused with an `error`
//!   (`TOO_MANY_SUBSCRIPTIONS`);
//! - `ping` is answered with `pong`, and the server pings every heartbeat;
//! - when the connection ends, every subscription on it ends.
//!
//! [`SubscriptionSettings::init_timeout`]: super::SubscriptionSettings::init_timeout
//! [`SubscriptionSettings::max_per_connection`]: super::SubscriptionSettings::max_per_connection

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::stream::{AbortHandle as StreamStop, Abortable, BoxStream, SelectAll};
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::TOO_MANY_SUBSCRIPTIONS;
use super::routes::{StreamState, context};
use super::session::{self, EventStream, Opened};
use crate::graphql_http::{GraphQLRequest, RequestContext};

const PROTOCOL: &str = "graphql-transport-ws";

/// What a connection reads from its client at once. Clients send small messages (a
/// larger one takes more reads), and the WebSocket zero-fills this much before every read
/// it tries, which a connection does after each batch of events it writes: at the default
/// (128 KiB) that filling costs more than writing the events.
const READ_BUFFER: usize = 4 * 1024;

/// Close codes of the protocol.
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

pub(crate) async fn upgrade(state: StreamState, request: Request, request_id: String) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade.protocols([PROTOCOL]).read_buffer_size(READ_BUFFER),
        Err(rejection) => return rejection.into_response(),
    };
    let offered = upgrade.selected_protocol().is_some();
    let bare = Request::from_parts(parts, ());
    let headers = bare.headers().clone();
    let base = context(&state.http, &bare, headers, request_id);
    upgrade.on_upgrade(move |socket| async move {
        let mut connection = Connection {
            socket,
            state,
            base,
            acknowledged: None,
            running: Running::default(),
        };
        if !offered {
            return connection
                .close(
                    close::SUBPROTOCOL_NOT_ACCEPTABLE,
                    "Subprotocol not acceptable",
                )
                .await;
        }
        connection.serve().await;
    })
}

/// The subscriptions running on one connection; dropping it ends them all.
/// Each with the number it was started as, so a finished task's notice cannot remove a
/// later subscription that reuses its id.
#[derive(Default)]
struct Running {
    tasks: HashMap<String, (u64, Stop)>,
    started: u64,
}

/// How a subscription on the connection is ended: the task that opens it, then its events.
enum Stop {
    Opening(AbortHandle),
    Streaming(StreamStop),
}

impl Stop {
    fn abort(&self) {
        match self {
            Self::Opening(task) => task.abort(),
            Self::Streaming(events) => events.abort(),
        }
    }
}

impl Running {
    /// The events of subscription `id`, started as `number`, as the connection writes
    /// them (ended by a client's `complete`); `None` when it was completed meanwhile.
    fn streaming(
        &mut self,
        id: String,
        number: u64,
        events: EventStream,
    ) -> Option<Abortable<BoxStream<'static, Said>>> {
        let (started, stop) = self.tasks.get_mut(&id)?;
        if *started != number {
            return None;
        }
        let id_json = Value::String(id.clone()).to_string();
        let said = events
            .map(move |payload| Said::Next(next(&id_json, &payload)))
            .chain(futures::stream::once(async move { Said::End(id, number) }))
            .boxed();
        let (said, stopping) = futures::stream::abortable(said);
        *stop = Stop::Streaming(stopping);
        Some(said)
    }

    /// Forgets subscription `id` when it is still the one started as `number`.
    fn forget(&mut self, id: &str, number: u64) {
        if self
            .tasks
            .get(id)
            .is_some_and(|(started, _)| *started == number)
        {
            self.tasks.remove(id);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

/// What a subscription's task tells its connection.
enum Outgoing {
    /// A message, written out.
    Send(String),
    /// Subscription `id` (started as the number) is open: its events, which the
    /// connection writes as they come, no task in between.
    Stream(String, u64, EventStream),
    Done(String, u64),
}

/// What a subscription's events come to on its connection.
enum Said {
    /// A message, written out.
    Next(String),
    /// The events ended: `complete`, and the subscription is forgotten.
    End(String, u64),
}

/// The events of every open subscription on a connection, as they come.
type Streams = SelectAll<Abortable<BoxStream<'static, Said>>>;

/// Messages a connection writes before it flushes them together.
const WRITTEN_AT_ONCE: usize = 64;

/// A `next` message for the subscription whose id is `id` (as JSON), around a response
/// body serialized once for every client subscription that receives it.
fn next(id: &str, payload: &str) -> String {
    const TYPE: &str = r#","type":"next","payload":"#;
    let mut message = String::with_capacity(7 + id.len() + TYPE.len() + payload.len() + 1);
    message.push_str(r#"{"id":"#);
    message.push_str(id);
    message.push_str(TYPE);
    message.push_str(payload);
    message.push('}');
    message
}

struct Connection {
    socket: WebSocket,
    state: StreamState,
    base: RequestContext,
    /// The headers of the acknowledged connection (the upgrade request's and
    /// `connection_init`'s payload).
    acknowledged: Option<HeaderMap>,
    running: Running,
}

/// The upgrade request's headers with the string entries of `connection_init`'s payload
/// (and of its `headers` object) on top.
fn headers_with(mut headers: HeaderMap, payload: Option<&Value>) -> HeaderMap {
    let entries = payload
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|payload| {
            let nested = payload.get("headers").and_then(Value::as_object);
            payload.iter().chain(nested.into_iter().flatten())
        });
    for (name, value) in entries {
        let (Some(value), Ok(name)) = (value.as_str(), HeaderName::try_from(name.as_str())) else {
            continue;
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    headers
}

impl Connection {
    async fn serve(&mut self) {
        let settings = self.state.subscriptions.settings.clone();
        let (outgoing, mut from_tasks) = mpsc::channel::<Outgoing>(64);
        let init_deadline = tokio::time::Instant::now() + settings.init_timeout;
        let mut heartbeat = tokio::time::interval(settings.heartbeat);
        heartbeat.tick().await;
        let mut streams = Streams::new();
        loop {
            let waiting_for_init = self.acknowledged.is_none();
            tokio::select! {
                received = self.socket.recv() => {
                    let text = match received {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            return self.close(close::BAD_REQUEST, "Binary messages are not part of the protocol").await;
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => continue,
                    };
                    let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                        return self.close(close::BAD_REQUEST, "Invalid message received").await;
                    };
                    if !self.handle(message, &outgoing).await {
                        return;
                    }
                }
                Some(said) = from_tasks.recv() => match said {
                    Outgoing::Send(message) => {
                        if self.socket.send(Message::text(message)).await.is_err() {
                            return;
                        }
                    }
                    Outgoing::Stream(id, number, events) => {
                        if let Some(events) = self.running.streaming(id, number, events) {
                            streams.push(events);
                        }
                    }
                    Outgoing::Done(id, number) => self.running.forget(&id, number),
                },
                Some(said) = streams.next(), if !streams.is_empty() => {
                    // What the subscriptions have said meanwhile goes out with it, in one
                    // write.
                    let mut said = Some(said);
                    let mut written = 0;
                    while let Some(next) = said.take() {
                        if !self.write(next).await {
                            return;
                        }
                        written += 1;
                        if written < WRITTEN_AT_ONCE {
                            said = streams.next().now_or_never().flatten();
                        }
                    }
                    if self.socket.flush().await.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(init_deadline), if waiting_for_init => {
                    return self.close(close::INIT_TIMEOUT, "Connection initialisation timeout").await;
                }
                _ = heartbeat.tick() => {
                    if self.socket.send(Message::text(json!({ "type": "ping" }).to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Writes (without flushing) what a subscription said; `false` when the connection is
    /// over.
    async fn write(&mut self, said: Said) -> bool {
        let message = match said {
            Said::Next(message) => message,
            Said::End(id, number) => {
                self.running.forget(&id, number);
                json!({ "id": id, "type": "complete" }).to_string()
            }
        };
        self.socket.feed(Message::text(message)).await.is_ok()
    }

    /// Handles one client message; `false` when the connection is over.
    async fn handle(&mut self, message: Value, outgoing: &mpsc::Sender<Outgoing>) -> bool {
        let kind = message.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "connection_init" => {
                if self.acknowledged.is_some() {
                    self.close(close::TOO_MANY_INITS, "Too many initialisation requests")
                        .await;
                    return false;
                }
                let headers = headers_with(self.base.headers.clone(), message.get("payload"));
                if let Err(refusal) = self
                    .state
                    .subscriptions
                    .service
                    .reauthenticate(&headers)
                    .await
                {
                    tracing::info!(request_id = %self.base.request_id, %refusal, "a WebSocket connection's token was refused");
                    self.close(close::FORBIDDEN, "Forbidden").await;
                    return false;
                }
                self.acknowledged = Some(headers);
                self.send(json!({ "type": "connection_ack" })).await
            }
            "ping" => self.send(json!({ "type": "pong" })).await,
            "pong" => true,
            "subscribe" => self.subscribe(&message, outgoing).await,
            "complete" => {
                if let Some(id) = message.get("id").and_then(Value::as_str)
                    && let Some((_, task)) = self.running.tasks.remove(id)
                {
                    task.abort();
                }
                true
            }
            _ => {
                self.close(close::BAD_REQUEST, "Invalid message received")
                    .await;
                false
            }
        }
    }

    async fn subscribe(&mut self, message: &Value, outgoing: &mpsc::Sender<Outgoing>) -> bool {
        let Some(headers) = self.acknowledged.clone() else {
            self.close(close::UNAUTHORIZED, "Unauthorized").await;
            return false;
        };
        let id = message.get("id").and_then(Value::as_str).unwrap_or("");
        let payload = message.get("payload").and_then(Value::as_object);
        let (Some(payload), false) = (payload, id.is_empty()) else {
            self.close(close::BAD_REQUEST, "Invalid message received")
                .await;
            return false;
        };
        let Some(request) = graphql_request(payload) else {
            self.close(close::BAD_REQUEST, "Invalid message received")
                .await;
            return false;
        };
        if self.running.tasks.contains_key(id) {
            let reason = format!("Subscriber for {id} already exists");
            self.close(close::SUBSCRIBER_EXISTS, &reason).await;
            return false;
        }
        let max = self.state.subscriptions.settings.max_per_connection;
        if self.running.tasks.len() >= max {
            return self
                .send(json!({ "id": id, "type": "error", "payload": [{
                    "message": format!("A connection may hold {max} subscriptions at once"),
                    "extensions": { "code": TOO_MANY_SUBSCRIPTIONS, "limit": max }
                }] }))
                .await;
        }
        let context = RequestContext {
            headers,
            ..self.base.clone()
        };
        self.running.started += 1;
        let number = self.running.started;
        let task = tokio::spawn(run(
            self.state.clone(),
            (id.to_owned(), number),
            request,
            context,
            outgoing.clone(),
        ));
        self.running
            .tasks
            .insert(id.to_owned(), (number, Stop::Opening(task.abort_handle())));
        true
    }

    async fn send(&mut self, message: Value) -> bool {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

/// The request a `subscribe` payload carries; `None` when it is malformed.
fn graphql_request(payload: &serde_json::Map<String, Value>) -> Option<GraphQLRequest> {
    let text = |name: &str| match payload.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.clone())),
        Some(_) => None,
    };
    let object = |name: &str| match payload.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(map)) => Some(Some(map.clone())),
        Some(_) => None,
    };
    let request = GraphQLRequest {
        query: text("query")?,
        operation_name: text("operationName")?,
        variables: object("variables")?,
        extensions: object("extensions")?,
        document_id: text("documentId")?,
    };
    (request.query.is_some() || request.names_persisted_document()).then_some(request)
}

/// Opens one subscription on the connection: a subscription's events go to the connection
/// to write; one result goes as `next`, then `complete`; a refusal as `error`.
async fn run(
    state: StreamState,
    (id, number): (String, u64),
    request: GraphQLRequest,
    context: RequestContext,
    outgoing: mpsc::Sender<Outgoing>,
) {
    match session::open(&state.subscriptions, request, &context).await {
        Opened::Refused(event, _) => {
            let errors = event.get("errors").cloned().unwrap_or(json!([]));
            let error = json!({ "id": id, "type": "error", "payload": errors });
            let _ = outgoing.send(Outgoing::Send(error.to_string())).await;
            let _ = outgoing.send(Outgoing::Done(id, number)).await;
            return;
        }
        Opened::Single(event) => {
            let message = next(&Value::String(id.clone()).to_string(), &event.to_string());
            let _ = outgoing.send(Outgoing::Send(message)).await;
        }
        Opened::Stream(events) => {
            let _ = outgoing.send(Outgoing::Stream(id, number, events)).await;
            return;
        }
    }
    let complete = json!({ "id": id, "type": "complete" });
    let _ = outgoing.send(Outgoing::Send(complete.to_string())).await;
    let _ = outgoing.send(Outgoing::Done(id, number)).await;
}
