//! A minimal `graphql-transport-ws` client, as a browser tab running `graphql-ws` would be:
//! one WebSocket, `connection_init` (with a bearer token or none), `connection_ack`, then
//! `subscribe` messages; the server's `ping`s are answered with `pong`.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the server has to acknowledge a connection.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket URL of a GraphQL endpoint: `http://…` → `ws://…`.
pub fn ws_url(http_url: &str) -> anyhow::Result<String> {
    if let Some(rest) = http_url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http_url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if http_url.starts_with("ws://") || http_url.starts_with("wss://") {
        Ok(http_url.to_owned())
    } else {
        bail!("`{http_url}` is not an http:// or ws:// URL")
    }
}

/// Connects and waits for `connection_ack`.
pub async fn connect(ws_url: &str, token: Option<&str>) -> anyhow::Result<Socket> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting to {ws_url}"))?;
    let payload = match token {
        Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
        None => json!({}),
    };
    send(
        &mut socket,
        &json!({ "type": "connection_init", "payload": payload }),
    )
    .await?;
    let acknowledged = tokio::time::timeout(ACK_TIMEOUT, async {
        while let Some(message) = socket.next().await {
            let text = match message? {
                Message::Text(text) => text,
                Message::Close(frame) => bail!("closed before connection_ack: {frame:?}"),
                _ => continue,
            };
            let message: Value = serde_json::from_str(text.as_str())?;
            match message["type"].as_str() {
                Some("connection_ack") => return Ok(()),
                Some("ping") => send(&mut socket, &json!({ "type": "pong" })).await?,
                _ => bail!("unexpected before connection_ack: {text}"),
            }
        }
        bail!("the connection ended before connection_ack")
    })
    .await;
    match acknowledged {
        Ok(result) => result.map(|()| socket),
        Err(_) => bail!("no connection_ack within {} s", ACK_TIMEOUT.as_secs()),
    }
}

pub async fn send(socket: &mut Socket, message: &Value) -> anyhow::Result<()> {
    socket.send(Message::text(message.to_string())).await?;
    Ok(())
}

/// A `subscribe` message.
pub fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })
}

/// What a server message is, read without parsing the whole of every `next` (a thousand
/// subscribers receive a hundred each per second): its `type`.
pub fn kind(text: &str) -> Kind {
    // The gateway writes `{"id":…,"payload":…,"type":"next"}` (keys sorted); look for the
    // type anywhere rather than rely on that.
    if text.contains("\"type\":\"next\"") {
        Kind::Next
    } else if text.contains("\"type\":\"ping\"") {
        Kind::Ping
    } else if text.contains("\"type\":\"error\"") {
        Kind::Error
    } else if text.contains("\"type\":\"complete\"") {
        Kind::Complete
    } else {
        Kind::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Next,
    Ping,
    Error,
    Complete,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoints_become_websocket_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:4000/graphql").ok().as_deref(),
            Some("ws://127.0.0.1:4000/graphql")
        );
        assert!(ws_url("127.0.0.1:4000").is_err());
    }

    #[test]
    fn server_messages_are_told_apart_by_type() {
        assert_eq!(
            kind(r#"{"id":"1","payload":{"data":{}},"type":"next"}"#),
            Kind::Next
        );
        assert_eq!(kind(r#"{"type":"ping"}"#), Kind::Ping);
        assert_eq!(
            kind(r#"{"id":"1","payload":[],"type":"error"}"#),
            Kind::Error
        );
        assert_eq!(kind(r#"{"id":"1","type":"complete"}"#), Kind::Complete);
    }
}
