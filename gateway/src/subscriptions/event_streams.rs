//! GraphQL over server-sent events, single connection mode (the `graphql-sse` protocol's
//! other mode): one event stream carries every operation of a client, so a browser on
//! HTTP/1.1 does not spend one of its six connections per subscription.
//!
//! - `PUT` on the GraphQL endpoint reserves a stream: `201` with the reservation token as
//!   `text/plain`. The caller (the token in `Authorization`, or none) is verified and
//!   remembered; a reservation whose stream does not open within
//!   [`SubscriptionSettings::reservation_timeout`] expires. Reservations not opened yet
//!   are bounded per client address and per process (`429`, `TOO_MANY_RESERVATIONS`; see
//!   `reservations`), so reserving without opening cannot keep others from streams.
//! - `GET` or `POST` accepting `text/event-stream` with the token (the
//!   `x-graphql-event-stream-token` header or `?token=`) opens that stream, once (`409`
//!   when it is open already); it must come from the caller who reserved it (`404`
//!   otherwise, as for an unknown token).
//! - `POST` (or `GET`) of an operation with the token and `extensions.operationId` runs it
//!   like on any other transport (the same admission, limits and authentication) and
//!   answers `202`; its results go on the stream as `next` events `{id, payload}`, then a
//!   `complete` event `{id}`. A refused operation gets its errors and status at once.
//!   More than [`SubscriptionSettings::max_per_connection`] at once on one stream are
//!   refused with `TOO_MANY_SUBSCRIPTIONS`.
//! - `DELETE ?operationId=…` with the token stops that operation, for the caller who
//!   reserved the stream only (`404` otherwise).
//! - When the client closes the stream, the reservation ends with every operation on it,
//!   and their places and upstream subscriptions are freed.
//!
//! [`SubscriptionSettings::reservation_timeout`]: super::SubscriptionSettings::reservation_timeout
//! [`SubscriptionSettings::max_per_connection`]: super::SubscriptionSettings::max_per_connection

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Query, Request};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::reservations::{AddressKey, NotOpened, Refused, Registry, ReservationLimits};
use super::routes::{StreamState, client_addr, context, read_request};
use super::session::{self, EventStream, Opened, payload};
use super::{TOO_MANY_RESERVATIONS, TOO_MANY_SUBSCRIPTIONS};

/// The header that carries the reservation token.
pub(crate) const TOKEN_HEADER: &str = "x-graphql-event-stream-token";
/// The query parameter that carries it (for `EventSource`, which sends no headers).
const TOKEN_PARAMETER: &str = "token";

/// The reservation token a request names, from its header or its query string.
pub(crate) fn token_of(request: &Request) -> Option<String> {
    if let Some(token) = request
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|token| !token.is_empty())
    {
        return Some(token.to_owned());
    }
    parameter(request, TOKEN_PARAMETER)
}

fn parameter(request: &Request, name: &str) -> Option<String> {
    // Most requests on the endpoint name no token: no parse for them.
    if !request.uri().query()?.contains(name) {
        return None;
    }
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(request.uri()).ok()?;
    params
        .into_iter()
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value)
}

type Reservations = Arc<Mutex<Registry>>;

/// The reserved and open event streams of this process.
#[derive(Default)]
pub(crate) struct EventStreams {
    reservations: Reservations,
}

fn lock(reservations: &Reservations) -> MutexGuard<'_, Registry> {
    reservations.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the stream `token` (outside the lock: dropping it stops its operations).
fn forget(reservations: &Reservations, token: &str) {
    let removed = lock(reservations).remove(token);
    drop(removed);
}

impl EventStreams {
    /// Reservations and open streams now.
    pub fn count(&self) -> usize {
        lock(&self.reservations).len()
    }

    /// Reservations not opened yet.
    pub fn pending(&self) -> usize {
        lock(&self.reservations).pending()
    }

    /// The reservation `token`'s caller, when it exists.
    fn caller_of(&self, token: &str) -> Option<Option<Uuid>> {
        lock(&self.reservations)
            .get(token)
            .map(|reservation| reservation.caller)
    }
}

fn errors(status: StatusCode, message: &str, code: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (
        status,
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn not_found() -> Response {
    errors(StatusCode::NOT_FOUND, "Stream not found", "BAD_REQUEST")
}

fn unauthenticated(refusal: &str) -> Response {
    errors(StatusCode::UNAUTHORIZED, refusal, "UNAUTHENTICATED")
}

/// Who `headers` say the caller is; `Err` is the response refusing them.
async fn caller(state: &StreamState, headers: &HeaderMap) -> Result<Option<Uuid>, Response> {
    state
        .subscriptions
        .service
        .reauthenticate(headers)
        .await
        .map(|identity| identity.key)
        .map_err(|refusal| unauthenticated(&refusal))
}

/// Whether the reservation `token` exists and belongs to the caller of `headers`; `Err`
/// is the response refusing the request.
async fn check_caller(
    state: &StreamState,
    token: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let streams = &state.subscriptions.event_streams;
    let Some(reserved_by) = streams.caller_of(token) else {
        return Err(not_found());
    };
    if caller(state, headers).await? != reserved_by {
        return Err(not_found());
    }
    Ok(())
}

/// `PUT`: reserves a stream for the caller.
pub(crate) async fn reserve(state: StreamState, request: Request) -> Response {
    let accepts_text = request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .all(|value| {
            let value = value.to_ascii_lowercase();
            value.contains("text/plain") || value.contains("*/*")
        });
    if !accepts_text {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    }
    let caller = match caller(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let from = AddressKey::of(client_addr(&state.http, &request));
    let subscriptions = &state.subscriptions;
    let settings = &subscriptions.settings;
    let limits = ReservationLimits {
        pending_per_address: settings.max_pending_streams_per_address,
        pending: settings.max_pending_streams,
        open: settings.max_per_process,
    };
    let token = hex::encode(rand::random::<[u8; 32]>());
    let reservations = &subscriptions.event_streams.reservations;
    let mut locked = lock(reservations);
    if let Err(refused) = locked.reserve(token.clone(), caller, from, limits) {
        drop(locked);
        return refusal(refused);
    }
    // Started under the lock, so the timer is recorded before it can fire.
    let timer = tokio::spawn(expire(
        reservations.clone(),
        token.clone(),
        settings.reservation_timeout,
    ));
    locked.set_expiry(&token, timer.abort_handle());
    drop(locked);
    (
        StatusCode::CREATED,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        token,
    )
        .into_response()
}

/// The response refusing a reservation past a limit.
fn refusal(refused: Refused) -> Response {
    let (message, code, limit) = match refused {
        Refused::PendingPerAddress(limit) => {
            tracing::debug!(
                limit,
                "an event stream reservation was refused at its address's limit"
            );
            (
                format!(
                    "This client address holds its limit of {limit} event streams reserved and not yet opened; open one or try again later"
                ),
                TOO_MANY_RESERVATIONS,
                limit,
            )
        }
        Refused::Pending(limit) => {
            tracing::warn!(
                limit,
                "an event stream reservation was refused at the process's limit of pending reservations"
            );
            (
                format!(
                    "This server holds its limit of {limit} event streams reserved and not yet opened; try again later"
                ),
                TOO_MANY_RESERVATIONS,
                limit,
            )
        }
        Refused::Open(limit) => {
            tracing::warn!(limit, "an event stream was refused at the process's limit");
            (
                format!("This server holds its limit of {limit} event streams; try again later"),
                TOO_MANY_SUBSCRIPTIONS,
                limit,
            )
        }
    };
    let body = json!({ "errors": [{
        "message": message,
        "extensions": { "code": code, "limit": limit }
    }] });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Expires the reservation `token` after `timeout` unless it was opened (which stops this).
async fn expire(reservations: Reservations, token: String, timeout: std::time::Duration) {
    tokio::time::sleep(timeout).await;
    let expired = lock(&reservations).expire(&token);
    if expired.is_some() {
        tracing::info!("an event stream reservation expired unused");
    }
    drop(expired);
}

/// Removes its reservation when the stream is dropped (the client left).
struct OpenStream {
    reservations: Reservations,
    token: String,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        forget(&self.reservations, &self.token);
    }
}

/// `GET`/`POST` accepting `text/event-stream` with a token: opens the reserved stream.
pub(crate) async fn open(state: StreamState, request: Request, token: String) -> Response {
    if let Err(refusal) = check_caller(&state, &token, request.headers()).await {
        return refusal;
    }
    let reservations = state.subscriptions.event_streams.reservations.clone();
    let opened = lock(&reservations).open(&token);
    let receiver = match opened {
        Ok(receiver) => receiver,
        Err(NotOpened::NotFound) => return not_found(),
        Err(NotOpened::AlreadyOpen) => {
            return errors(StatusCode::CONFLICT, "Stream already open", "BAD_REQUEST");
        }
    };
    let guard = OpenStream {
        reservations,
        token,
    };
    // A comment first: some browsers wait for a first byte before they report the stream
    // open.
    let first =
        futures::stream::once(async { Ok::<_, Infallible>(SseEvent::default().comment("")) });
    let events = futures::stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        let event = receiver.recv().await?;
        Some((Ok(event), (receiver, guard)))
    });
    let heartbeat = KeepAlive::new()
        .interval(state.subscriptions.settings.heartbeat)
        .text("");
    Sse::new(first.chain(events))
        .keep_alive(heartbeat)
        .into_response()
}

/// A `next` event of the operation whose id is `id` (as JSON), around a response body
/// serialized once for every client subscription that receives it.
fn next(id: &str, payload: &str) -> SseEvent {
    SseEvent::default()
        .event("next")
        .data(format!(r#"{{"id":{id},"payload":{payload}}}"#))
}

fn complete(id: &str) -> SseEvent {
    SseEvent::default()
        .event("complete")
        .data(json!({ "id": id }).to_string())
}

/// The operation id of `extensions.operationId` (a string, or a number as text).
fn operation_id(extensions: Option<&serde_json::Map<String, Value>>) -> Option<String> {
    match extensions?.get("operationId")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// `POST`/`GET` of an operation with a token: runs it onto the reserved stream.
pub(crate) async fn operation(
    state: StreamState,
    request: Request,
    token: String,
    request_id: String,
) -> Response {
    let headers = request.headers().clone();
    if let Err(refusal) = check_caller(&state, &token, &headers).await {
        return refusal;
    }
    let (graphql, bare) = match read_request(&state.http, request).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    let Some(id) = operation_id(graphql.extensions.as_ref()) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "Operation ID is missing (extensions.operationId)",
            "BAD_REQUEST",
        );
    };
    let reservations = state.subscriptions.event_streams.reservations.clone();
    let max = state.subscriptions.settings.max_per_connection;
    let (number, sender) = {
        let mut locked = lock(&reservations);
        let Some(reservation) = locked.get_mut(&token) else {
            return not_found();
        };
        if reservation.operations.contains_key(&id) {
            return errors(
                StatusCode::CONFLICT,
                "Operation with ID already exists",
                "BAD_REQUEST",
            );
        }
        if reservation.operations.len() >= max {
            let body = json!({ "errors": [{
                "message": format!("An event stream may hold {max} subscriptions at once"),
                "extensions": { "code": TOO_MANY_SUBSCRIPTIONS, "limit": max }
            }] });
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(CONTENT_TYPE, "application/json; charset=utf-8")],
                body.to_string(),
            )
                .into_response();
        }
        reservation.started += 1;
        let number = reservation.started;
        reservation.operations.insert(id.clone(), (number, None));
        (number, reservation.sender.clone())
    };
    let context = context(&state.http, &bare, headers, request_id);
    let events: EventStream = match session::open(&state.subscriptions, graphql, &context).await {
        Opened::Refused(event, status) => {
            settle(&reservations, &token, &id, number, None);
            return (
                status,
                [(CONTENT_TYPE, "application/json; charset=utf-8")],
                event.to_string(),
            )
                .into_response();
        }
        Opened::Single(event) => {
            let body = payload(&event);
            Box::pin(futures::stream::once(async move { body }))
        }
        Opened::Stream(events) => events,
    };
    let task = tokio::spawn(forward(
        events,
        (id.clone(), number),
        sender,
        reservations.clone(),
        token.clone(),
    ));
    if !settle(
        &reservations,
        &token,
        &id,
        number,
        Some(task.abort_handle()),
    ) {
        // Stopped (or the stream closed) while it was being prepared.
        task.abort();
        return StatusCode::NO_CONTENT.into_response();
    }
    StatusCode::ACCEPTED.into_response()
}

/// Records the task of operation `id` (started as `number`), or forgets the operation when
/// `task` is `None`; `false` when it was stopped meanwhile.
fn settle(
    reservations: &Reservations,
    token: &str,
    id: &str,
    number: u64,
    task: Option<AbortHandle>,
) -> bool {
    let mut locked = lock(reservations);
    let Some(reservation) = locked.get_mut(token) else {
        return false;
    };
    match reservation.operations.get_mut(id) {
        Some((started, slot)) if *started == number => {
            match task {
                Some(task) => *slot = Some(task),
                None => {
                    reservation.operations.remove(id);
                }
            }
            true
        }
        _ => false,
    }
}

/// Sends one operation's events onto its stream, then `complete`, and forgets it.
async fn forward(
    mut events: EventStream,
    (id, number): (String, u64),
    sender: mpsc::Sender<SseEvent>,
    reservations: Reservations,
    token: String,
) {
    let id_json = Value::String(id.clone()).to_string();
    while let Some(event) = events.next().await {
        if sender.send(next(&id_json, &event)).await.is_err() {
            return;
        }
    }
    let _ = sender.send(complete(&id)).await;
    let mut locked = lock(&reservations);
    if let Some(reservation) = locked.get_mut(&token)
        && reservation
            .operations
            .get(&id)
            .is_some_and(|(started, _)| *started == number)
    {
        reservation.operations.remove(&id);
    }
}

/// `DELETE ?operationId=` with a token: stops that operation.
pub(crate) async fn stop(state: StreamState, request: Request, token: String) -> Response {
    if let Err(refusal) = check_caller(&state, &token, request.headers()).await {
        return refusal;
    }
    let Some(id) = parameter(&request, "operationId") else {
        return errors(
            StatusCode::BAD_REQUEST,
            "Operation ID is missing (?operationId=)",
            "BAD_REQUEST",
        );
    };
    let stopped = {
        let mut locked = lock(&state.subscriptions.event_streams.reservations);
        let Some(reservation) = locked.get_mut(&token) else {
            return not_found();
        };
        reservation.operations.remove(&id)
    };
    if let Some((_, Some(task))) = stopped {
        task.abort();
    }
    StatusCode::OK.into_response()
}
