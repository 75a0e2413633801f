//! How the gateway subscribes to a subgraph. Over a WebSocket, as a `graphql-transport-ws`
//! client: connect to the subgraph's GraphQL URL (`ws://` for `http://`, `wss://` for
//! `https://`, with the TLS settings of every subgraph client: extra roots, client
//! certificate), `connection_init` with the caller's headers as `{"headers": {...}}` (what
//! an HTTP fetch would send as headers), wait for `connection_ack`, `subscribe`, then read
//! `next` payloads until `complete` or `error`; pings are answered with pongs. Or, for a
//! subgraph in this process, through its [`SubgraphSubscriber`], with the verified caller
//! instead of headers.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::fetch::EntityCalls;
use crate::graphql::OperationKind;
use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphSubscriber};

/// The one subscription id the gateway uses on an upstream connection (one subscription
/// per connection).
const ID: &str = "1";

/// Why an upstream subscription could not be opened or ended abnormally. Internal: logged,
/// and the client gets a generic `SUBGRAPH_ERROR`.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error(
        "the subgraph URL `{0}` cannot be reached over a WebSocket (http:// or https:// URLs only)"
    )]
    Url(String),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("the TLS handshake failed: {0}")]
    Tls(String),
    #[error("the subgraph did not acknowledge the connection in time")]
    InitTimeout,
    #[error("the subgraph broke the protocol: {0}")]
    Protocol(String),
    #[error("the connection closed: {0}")]
    Closed(String),
    /// The subgraph closed the connection with a code of the protocol (`4400`–`4499`): it
    /// refused this subscription, and would again.
    #[error("the subgraph closed the connection with {code}: {reason}")]
    Refused { code: u16, reason: String },
}

impl UpstreamError {
    /// Whether the connection broke (the subgraph restarting, say) rather than the
    /// subgraph refusing: subscribing again may work.
    pub fn is_broken_connection(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::InitTimeout | Self::Closed(_))
    }

    /// What the client is told: which step failed, without the subgraph's details.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::Url(_) => "its URL cannot be reached over a WebSocket",
            Self::Connect(_) => "the gateway could not connect to it",
            Self::Tls(_) => {
                "the gateway could not connect to it over TLS (its certificate is not trusted, or it refused the gateway's)"
            }
            Self::InitTimeout => "it did not acknowledge the connection in time",
            Self::Protocol(_) => "it broke the subscription protocol",
            Self::Closed(_) => "its connection closed",
            Self::Refused { .. } => "it refused the subscription",
        }
    }
}

/// What one upstream subscription asks.
#[derive(Clone)]
pub(crate) struct UpstreamRequest {
    pub subgraph: String,
    /// The subgraph's GraphQL URL (`http://…` or `https://…`).
    pub url: String,
    pub query: String,
    pub variables: Map<String, Value>,
    /// Sent in `connection_init` as `{"headers": {...}}`.
    pub headers: HeaderMap,
    /// The verified caller, for a subgraph in this process.
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// Set for a subgraph in this process: subscribed to without a socket.
    pub in_process: Option<Arc<dyn SubgraphSubscriber>>,
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRequest")
            .field("subgraph", &self.subgraph)
            .field("url", &self.url)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// What an upstream subscription says next.
#[derive(Debug)]
pub(crate) enum Upstream {
    Next(SubgraphResponse),
    /// The subgraph refused the subscription or it failed: raw GraphQL errors.
    Errors(Vec<Value>),
    Complete,
}

/// An open upstream subscription.
pub(crate) enum UpstreamSubscription {
    WebSocket(Box<WebSocketSubscription>),
    InProcess(BoxStream<'static, SubgraphResponse>),
}

impl UpstreamSubscription {
    /// Subscribes as `request` says: in this process, or over a WebSocket (`tls` for a
    /// `wss://` one), initialised within `init_timeout`.
    pub async fn open(
        request: &UpstreamRequest,
        init_timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Self, UpstreamError> {
        if let Some(subscriber) = &request.in_process {
            let events = subscriber.subscribe(SubgraphRequest {
                subgraph_name: request.subgraph.clone(),
                query: request.query.clone(),
                operation_name: None,
                variables: request.variables.clone(),
                headers: request.headers.clone(),
                extensions: Map::new(),
                context: request.context.clone(),
                kind: OperationKind::Subscription,
                entity_calls: EntityCalls::default(),
            });
            return Ok(Self::InProcess(events));
        }
        WebSocketSubscription::open(request, init_timeout, tls)
            .await
            .map(|socket| Self::WebSocket(Box::new(socket)))
    }

    /// What the subscription says next.
    pub async fn next(&mut self) -> Result<Upstream, UpstreamError> {
        match self {
            Self::WebSocket(socket) => socket.next().await,
            Self::InProcess(events) => Ok(events
                .next()
                .await
                .map_or(Upstream::Complete, Upstream::Next)),
        }
    }

    /// Ends the subscription, politely.
    pub async fn close(self) {
        if let Self::WebSocket(socket) = self {
            socket.close().await;
        }
    }
}

/// The byte stream under a WebSocket: TCP, or TLS over TCP.
trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// A subscription over a WebSocket to a subgraph (one subscription per connection).
pub(crate) struct WebSocketSubscription {
    socket: WebSocketStream<Box<dyn Connection>>,
}

/// `ws://` for an `http://` URL, `wss://` for an `https://` one.
fn websocket_url(url: &str) -> Result<String, UpstreamError> {
    if let Some(rest) = url.strip_prefix("http://") {
        return Ok(format!("ws://{rest}"));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        return Ok(format!("wss://{rest}"));
    }
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(url.to_owned());
    }
    Err(UpstreamError::Url(url.to_owned()))
}

/// Opens the connection `request` goes to (through TLS with `tls` for `wss://`) and makes
/// it a WebSocket.
async fn connect(
    request: Request,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<WebSocketStream<Box<dyn Connection>>, UpstreamError> {
    let uri = request.uri();
    let secure = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or_else(|| UpstreamError::Url(uri.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| UpstreamError::Connect(error.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Connection> = if secure {
        let config = tls.ok_or_else(|| UpstreamError::Tls("no TLS configuration".into()))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|error| UpstreamError::Url(format!("{host}: {error}")))?;
        let tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|error| UpstreamError::Tls(error.to_string()))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|error| UpstreamError::Connect(error.to_string()))?;
    Ok(socket)
}

/// `connection_init`'s payload: the headers a fetch would carry.
fn init_payload(headers: &HeaderMap) -> Value {
    let headers: Map<String, Value> = headers
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_owned(), Value::String(value.to_owned())))
        })
        .collect();
    json!({ "headers": headers })
}

impl WebSocketSubscription {
    /// Connects, initialises within `init_timeout`, and subscribes.
    pub async fn open(
        request: &UpstreamRequest,
        init_timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Self, UpstreamError> {
        let mut ws_request = websocket_url(&request.url)?
            .into_client_request()
            .map_err(|error| UpstreamError::Url(format!("{}: {error}", request.url)))?;
        ws_request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let opened = async {
            let socket = connect(ws_request, tls).await?;
            let mut upstream = Self { socket };
            upstream
                .send(
                    json!({ "type": "connection_init", "payload": init_payload(&request.headers) }),
                )
                .await?;
            upstream.wait_for_ack().await?;
            Ok::<_, UpstreamError>(upstream)
        };
        let mut upstream = tokio::time::timeout(init_timeout, opened)
            .await
            .map_err(|_| UpstreamError::InitTimeout)??;
        let mut payload = json!({ "query": request.query });
        if !request.variables.is_empty() {
            payload["variables"] = Value::Object(request.variables.clone());
        }
        upstream
            .send(json!({ "id": ID, "type": "subscribe", "payload": payload }))
            .await?;
        Ok(upstream)
    }

    async fn send(&mut self, message: Value) -> Result<(), UpstreamError> {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|error| UpstreamError::Closed(error.to_string()))
    }

    async fn wait_for_ack(&mut self) -> Result<(), UpstreamError> {
        loop {
            let message = self.read().await?;
            match message.get("type").and_then(Value::as_str) {
                Some("connection_ack") => return Ok(()),
                Some("ping") => self.send(json!({ "type": "pong" })).await?,
                Some("pong") => {}
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "expected connection_ack, got {other:?}"
                    )));
                }
            }
        }
    }

    /// The next protocol message, as JSON.
    async fn read(&mut self) -> Result<Value, UpstreamError> {
        loop {
            let message = match self.socket.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(UpstreamError::Closed(error.to_string())),
                None => return Err(UpstreamError::Closed("end of stream".into())),
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|error| UpstreamError::Protocol(error.to_string()));
                }
                Message::Close(frame) => {
                    return Err(match frame {
                        Some(frame) if (4400..4500).contains(&u16::from(frame.code)) => {
                            UpstreamError::Refused {
                                code: frame.code.into(),
                                reason: frame.reason.to_string(),
                            }
                        }
                        Some(frame) => UpstreamError::Closed(format!(
                            "{} {}",
                            u16::from(frame.code),
                            frame.reason
                        )),
                        None => UpstreamError::Closed("no close frame".to_owned()),
                    });
                }
                Message::Binary(_) => {
                    return Err(UpstreamError::Protocol("a binary message".into()));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// What the subscription says next.
    pub async fn next(&mut self) -> Result<Upstream, UpstreamError> {
        loop {
            let message = self.read().await?;
            let kind = message.get("type").and_then(Value::as_str);
            let for_us = message.get("id").and_then(Value::as_str) == Some(ID);
            match kind {
                Some("ping") => self.send(json!({ "type": "pong" })).await?,
                Some("pong") => {}
                Some("next") if for_us => {
                    let payload = message.get("payload").cloned().unwrap_or(Value::Null);
                    let response = SubgraphResponse::from_json(payload)
                        .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
                    return Ok(Upstream::Next(response));
                }
                Some("error") if for_us => {
                    let errors = match message.get("payload") {
                        Some(Value::Array(errors)) => errors.clone(),
                        Some(other) => vec![other.clone()],
                        None => Vec::new(),
                    };
                    return Ok(Upstream::Errors(errors));
                }
                Some("complete") if for_us => return Ok(Upstream::Complete),
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "unexpected message {other:?}"
                    )));
                }
            }
        }
    }

    /// Ends the subscription and the connection, politely.
    pub async fn close(mut self) {
        let _ = self.send(json!({ "id": ID, "type": "complete" })).await;
        let _ = self.socket.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_subgraph_url_becomes_ws_and_an_https_one_wss() {
        assert_eq!(
            websocket_url("http://127.0.0.1:4001/graphql")
                .ok()
                .as_deref(),
            Some("ws://127.0.0.1:4001/graphql")
        );
        assert_eq!(
            websocket_url("https://posts.example/graphql")
                .ok()
                .as_deref(),
            Some("wss://posts.example/graphql")
        );
        assert!(matches!(
            websocket_url("ftp://posts.example/graphql"),
            Err(UpstreamError::Url(_))
        ));
    }
}
