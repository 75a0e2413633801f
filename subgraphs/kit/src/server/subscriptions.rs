//! Subscriptions over WebSocket on a subgraph's GraphQL path: `GET /graphql` with
//! `Upgrade: websocket` and `Sec-WebSocket-Protocol: graphql-transport-ws` (the legacy
//! `graphql-ws` protocol of subscriptions-transport-ws is also spoken).
//!
//! # Who is asking
//!
//! A connection is authenticated as an HTTP request to the subgraph is, from the same
//! headers, which a client (the gateway, most of all) may send in two places:
//! - on the upgrade request itself, as HTTP headers;
//! - in the `connection_init` payload, under `headers`, with the names and values the
//!   HTTP headers would have; these override the upgrade request's:
//!
//! ```json
//! {"type": "connection_init",
//!  "payload": {"headers": {"authorization": "Bearer <access token>",
//!                          "x-forwarded-for": "203.0.113.7"}}}
//! ```
//!
//! Header names are matched without regard to case; values that are not strings are
//! ignored. `authorization` carries the caller's Gantry access token (what the gateway
//! forwards on HTTP), verified when the connection is initialised, exactly as a request's:
//! no token is an anonymous caller, a bad one is a refused token, and a field that needs a
//! viewer (`postCreated`) answers `UNAUTHENTICATED` saying why. `x-forwarded-for` (or
//! `forwarded`) names the client when the peer is a trusted proxy.
//!
//! # Limits and liveness
//!
//! Subscriptions per connection and per process ([`crate::live::limits`]); a connection
//! that sends no `connection_init` within its timeout is closed with `4408`; every
//! connection is pinged (`{"type":"ping"}`, or `ka` in the legacy protocol) at the
//! keep-alive interval once initialised; a message may be at most [`MAX_MESSAGE_BYTES`].
//! When the client goes away, its subscriptions end and their places are freed.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor};
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use super::HttpAuth;
use crate::live::{LiveSettings, SubscriptionLimits};
use crate::viewer::ViewerState;

/// The largest WebSocket message a client may send (an operation and its variables).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How a subgraph's WebSocket endpoint limits and keeps connections.
#[derive(Debug, Clone)]
pub struct SubscriptionEndpoint {
    pub limits: SubscriptionLimits,
    /// See [`LiveSettings::keepalive`].
    pub keepalive: Duration,
    /// See [`LiveSettings::connection_init_timeout`].
    pub connection_init_timeout: Duration,
}

impl SubscriptionEndpoint {
    /// The endpoint of a subgraph whose schema takes its permits from `limits`.
    pub fn new(limits: SubscriptionLimits, settings: &LiveSettings) -> Self {
        Self {
            limits,
            keepalive: settings.keepalive,
            connection_init_timeout: settings.connection_init_timeout,
        }
    }
}

/// Whether a request asks to become a WebSocket.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Answers an upgrade request: `400` without a GraphQL WebSocket protocol, else the
/// switch to a connection served by [`serve_connection`].
pub(super) async fn upgrade<E: Executor>(
    executor: E,
    auth: HttpAuth,
    endpoint: SubscriptionEndpoint,
    peer: std::net::IpAddr,
    mut parts: Parts,
) -> Response {
    let protocol = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "a GraphQL WebSocket needs Sec-WebSocket-Protocol: graphql-transport-ws",
        )
            .into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let headers = parts.headers;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            serve_connection(socket, executor, protocol, auth, endpoint, peer, headers)
        })
}

/// The connection's data once `connection_init` arrived: who is asking, from where, and
/// the connection's share of subscriptions.
fn connection_data(
    payload: &serde_json::Value,
    upgrade_headers: &HeaderMap,
    auth: &HttpAuth,
    peer: std::net::IpAddr,
    endpoint: &SubscriptionEndpoint,
) -> Data {
    let headers = effective_headers(payload, upgrade_headers);
    let mut data = Data::default();
    data.insert(ViewerState::from_headers(&headers, &auth.verifier));
    data.insert(auth.trusted_proxies.client_of(peer, &headers));
    data.insert(endpoint.limits.connection());
    data
}

/// The upgrade request's headers with the `connection_init` payload's `headers` over them.
fn effective_headers(payload: &serde_json::Value, upgrade_headers: &HeaderMap) -> HeaderMap {
    let mut headers = upgrade_headers.clone();
    let Some(sent) = payload.get("headers").and_then(|h| h.as_object()) else {
        return headers;
    };
    for (name, value) in sent {
        let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes());
        let value = value.as_str().map(HeaderValue::from_str);
        if let (Ok(name), Some(Ok(value))) = (name, value) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Serves one WebSocket until either side closes it.
async fn serve_connection<E: Executor>(
    socket: WebSocket,
    executor: E,
    protocol: WebSocketProtocols,
    auth: HttpAuth,
    endpoint: SubscriptionEndpoint,
    peer: std::net::IpAddr,
    upgrade_headers: HeaderMap,
) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let initialised = Arc::new(AtomicBool::new(false));
    let on_init = {
        let (initialised, endpoint) = (initialised.clone(), endpoint.clone());
        move |payload: serde_json::Value| async move {
            initialised.store(true, Ordering::Release);
            Ok(connection_data(
                &payload,
                &upgrade_headers,
                &auth,
                peer,
                &endpoint,
            ))
        }
    };
    let messages =
        async_graphql::http::WebSocket::new(executor, input, protocol).on_connection_init(on_init);
    futures::pin_mut!(messages);
    let ping = match protocol {
        WebSocketProtocols::GraphQLWS => r#"{"type":"ping"}"#,
        WebSocketProtocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#,
    };
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + endpoint.keepalive,
        endpoint.keepalive.max(Duration::from_millis(10)),
    );
    let init_deadline = tokio::time::sleep(endpoint.connection_init_timeout);
    tokio::pin!(init_deadline);
    let mut init_checked = false;
    loop {
        let outgoing = tokio::select! {
            message = messages.next() => match message {
                Some(WsMessage::Text(text)) => Message::Text(text.into()),
                Some(WsMessage::Close(code, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
                None => break,
            },
            _ = keepalive.tick() => {
                if !initialised.load(Ordering::Acquire) {
                    continue;
                }
                Message::Text(ping.into())
            }
            () = &mut init_deadline, if !init_checked => {
                init_checked = true;
                if initialised.load(Ordering::Acquire) {
                    continue;
                }
                let _ = sink.send(Message::Close(Some(CloseFrame {
                    code: 4408,
                    reason: "Connection initialisation timeout".into(),
                }))).await;
                break;
            }
        };
        if sink.send(outgoing).await.is_err() {
            break;
        }
    }
    tracing::debug!(%peer, "subscription connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_init_payloads_headers_override_the_upgrade_requests_whatever_their_case() {
        let mut upgrade = HeaderMap::new();
        upgrade.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer old"),
        );
        upgrade.insert("x-request-id", HeaderValue::from_static("r1"));
        let payload = json!({"headers": {"Authorization": "Bearer new", "x-forwarded-for": "203.0.113.7", "x-number": 5}});
        let headers = effective_headers(&payload, &upgrade);
        assert_eq!(headers[header::AUTHORIZATION], "Bearer new");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7");
        assert_eq!(headers["x-request-id"], "r1");
        assert!(
            !headers.contains_key("x-number"),
            "values that are not strings are ignored"
        );
    }

    #[test]
    fn a_payload_without_headers_keeps_the_upgrade_requests() {
        let mut upgrade = HeaderMap::new();
        upgrade.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        for payload in [json!(null), json!({}), json!({"headers": "x"})] {
            assert_eq!(
                effective_headers(&payload, &upgrade)[header::AUTHORIZATION],
                "Bearer t"
            );
        }
    }
}
