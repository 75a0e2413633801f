//! How the gateway subscribes to a subgraph. Over a WebSocket, as a `graphql-transport-ws`
//! client: connect to the subgraph's GraphQL URL (`ws://` for `http://`, `wss://` for
//! `https://`, with the TLS settings of every subgraph client: extra roots, client
//! certificate), `connection_init` with the caller's headers as `{"headers": {...}}` (what
//! an HTTP fetch would send as headers), wait for `connection_ack`, `subscribe`, then read
//! `next` payloads until `complete` or `error`; pings are answered with pongs. Upstream
//! subscriptions with the same `connection_init` payload share a connection (see
//! [`Pool`]), each with its own id. Or, for a
//! subgraph in this process, through its [`SubgraphSubscriber`], with the verified caller
//! instead of headers.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use xxhash_rust::xxh3::Xxh3;

use crate::fetch::EntityCalls;
use crate::graphql::OperationKind;
use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphSubscriber};

/// The gauge of WebSocket connections to subgraphs open.
pub(crate) const CONNECTIONS_GAUGE: &str = "gantry_subscription_upstream_connections_active";

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
    WebSocket(Box<Multiplexed>),
    InProcess(BoxStream<'static, SubgraphResponse>),
}

impl UpstreamSubscription {
    /// Subscribes as `request` says: in this process, or over a WebSocket of `pool`
    /// (shared with other subscriptions of the same connection identity).
    pub async fn open(request: &UpstreamRequest, pool: &Pool) -> Result<Self, UpstreamError> {
        if let Some(subscriber) = &request.in_process {
            let events = subscriber.subscribe(SubgraphRequest {
                subgraph_name: request.subgraph.clone(),
                query: request.query.as_str().into(),
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
        pool.subscribe(request)
            .await
            .map(|subscription| Self::WebSocket(Box::new(subscription)))
    }

    /// What the subscription says next.
    pub async fn next(&mut self) -> Result<Upstream, UpstreamError> {
        match self {
            Self::WebSocket(subscription) => subscription.next().await,
            Self::InProcess(events) => Ok(events
                .next()
                .await
                .map_or(Upstream::Complete, Upstream::Next)),
        }
    }
}

/// What a connection's task is asked.
enum Command {
    Subscribe {
        id: String,
        payload: Value,
        events: mpsc::UnboundedSender<Result<Upstream, UpstreamError>>,
        /// Answered once `subscribe` is sent, or with why the connection failed.
        sent: oneshot::Sender<Result<(), UpstreamError>>,
    },
    Complete {
        id: String,
    },
}

/// One WebSocket to a subgraph, its task, and how many subscriptions it holds.
struct Connection {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    /// Subscriptions on it; changed under the pool's lock.
    subscriptions: AtomicUsize,
    /// Set when it broke or could not be opened: no new subscription joins it.
    broken: AtomicBool,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Connections {
    /// Connection identity (URL and `connection_init` payload) → its open connections.
    by_identity: Mutex<HashMap<u64, Vec<Arc<Connection>>>>,
    open: AtomicUsize,
    ids: AtomicU64,
}

impl Connections {
    fn by_identity(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Arc<Connection>>>> {
        self.by_identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets `connection` (no subscription joins it any more).
    fn forget(&self, identity: u64, connection: &Connection) {
        forget(&mut self.by_identity(), identity, connection);
    }
}

fn forget(
    by_identity: &mut HashMap<u64, Vec<Arc<Connection>>>,
    identity: u64,
    connection: &Connection,
) {
    if let Some(connections) = by_identity.get_mut(&identity) {
        connections.retain(|open| open.id != connection.id);
        if connections.is_empty() {
            by_identity.remove(&identity);
        }
    }
}

/// The WebSocket connections to subgraphs of one process: upstream subscriptions with the
/// same connection identity (subgraph URL and `connection_init` payload, i.e. the same
/// forwarded headers) share a connection, up to `per_connection` on each; one closes when
/// its last subscription ends.
pub(crate) struct Pool {
    connections: Arc<Connections>,
    per_connection: usize,
    init_timeout: Duration,
    /// The TLS of `wss://` upstreams; `None` when it could not be made (they fail).
    tls: Option<Arc<ClientConfig>>,
}

/// Counts a connection as open until its task ends.
struct OpenConnection(Arc<Connections>);

impl OpenConnection {
    fn new(connections: Arc<Connections>) -> Self {
        connections.open.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(CONNECTIONS_GAUGE).increment(1.0);
        Self(connections)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(CONNECTIONS_GAUGE).decrement(1.0);
    }
}

impl Pool {
    pub fn new(
        per_connection: usize,
        init_timeout: Duration,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Self {
            connections: Arc::new(Connections::default()),
            per_connection: per_connection.max(1),
            init_timeout,
            tls,
        }
    }

    /// WebSocket connections to subgraphs open now.
    pub fn open(&self) -> usize {
        self.connections.open.load(Ordering::Acquire)
    }

    /// Subscribes on a connection of `request`'s identity with room left, opening one when
    /// there is none.
    async fn subscribe(&self, request: &UpstreamRequest) -> Result<Multiplexed, UpstreamError> {
        let url = websocket_url(&request.url)?;
        let init = init_payload(&request.headers);
        let identity = {
            let mut hasher = Xxh3::new();
            url.hash(&mut hasher);
            init.to_string().hash(&mut hasher);
            hasher.finish()
        };
        let connection = {
            let mut by_identity = self.connections.by_identity();
            let connections = by_identity.entry(identity).or_default();
            let room = connections.iter().find(|connection| {
                !connection.broken.load(Ordering::Acquire)
                    && connection.subscriptions.load(Ordering::Acquire) < self.per_connection
            });
            match room {
                Some(connection) => {
                    connection.subscriptions.fetch_add(1, Ordering::AcqRel);
                    connection.clone()
                }
                None => {
                    let (commands, received) = mpsc::unbounded_channel();
                    let connection = Arc::new(Connection {
                        id: self.connections.ids.fetch_add(1, Ordering::Relaxed),
                        commands,
                        subscriptions: AtomicUsize::new(1),
                        broken: AtomicBool::new(false),
                        next_id: AtomicU64::new(1),
                    });
                    connections.push(connection.clone());
                    tokio::spawn(run_connection(
                        OpenConnection::new(self.connections.clone()),
                        (identity, connection.clone()),
                        (url, init),
                        (self.init_timeout, self.tls.clone()),
                        received,
                    ));
                    connection
                }
            }
        };
        let id = connection
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let mut payload = json!({ "query": request.query });
        if !request.variables.is_empty() {
            payload["variables"] = Value::Object(request.variables.clone());
        }
        let (events, received) = mpsc::unbounded_channel();
        let (sent, answered) = oneshot::channel();
        let subscription = Multiplexed {
            id: id.clone(),
            events: received,
            connection: connection.clone(),
            identity,
            connections: self.connections.clone(),
        };
        let asked = connection.commands.send(Command::Subscribe {
            id,
            payload,
            events,
            sent,
        });
        if asked.is_err() {
            return Err(UpstreamError::Closed("the connection closed".into()));
        }
        match answered.await {
            Ok(Ok(())) => Ok(subscription),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(UpstreamError::Closed("the connection closed".into())),
        }
    }
}

/// One subscription on a shared WebSocket; dropping it completes it upstream, and closes
/// the connection when it was the last there.
pub(crate) struct Multiplexed {
    id: String,
    events: mpsc::UnboundedReceiver<Result<Upstream, UpstreamError>>,
    connection: Arc<Connection>,
    identity: u64,
    connections: Arc<Connections>,
}

impl Multiplexed {
    async fn next(&mut self) -> Result<Upstream, UpstreamError> {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| Err(UpstreamError::Closed("the connection closed".into())))
    }
}

impl Drop for Multiplexed {
    fn drop(&mut self) {
        let _ = self.connection.commands.send(Command::Complete {
            id: self.id.clone(),
        });
        let mut by_identity = self.connections.by_identity();
        let left = self.connection.subscriptions.fetch_sub(1, Ordering::AcqRel);
        if left <= 1 {
            // No subscription joins it from now on; its task ends when the last handle
            // on it (this one) goes, closing the socket.
            forget(&mut by_identity, self.identity, &self.connection);
        }
    }
}

/// Runs one shared connection: connects and initialises, then sends what its
/// subscriptions ask and hands each what the subgraph says to it, until the last one
/// leaves (the socket is closed) or the connection breaks (every subscription on it is
/// told).
async fn run_connection(
    open: OpenConnection,
    (identity, connection): (u64, Arc<Connection>),
    (url, init): (String, Value),
    (init_timeout, tls): (Duration, Option<Arc<ClientConfig>>),
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let connections = open.0.clone();
    let opened = WebSocketConnection::open(&url, init, init_timeout, tls.as_ref()).await;
    let mut socket = match opened {
        Ok(socket) => socket,
        Err(error) => {
            connection.broken.store(true, Ordering::Release);
            connections.forget(identity, &connection);
            drop(connection);
            fail_waiting(&mut commands, &error);
            return;
        }
    };
    // Only the pool and subscriptions hold the sender: the channel closes once the last
    // subscription leaves.
    let weak = Arc::downgrade(&connection);
    drop(connection);
    let mut subscriptions: HashMap<String, mpsc::UnboundedSender<Result<Upstream, UpstreamError>>> =
        HashMap::new();
    let broke = loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => {
                    socket.close().await;
                    return;
                }
                Some(Command::Subscribe { id, payload, events, sent }) => {
                    let message = json!({ "id": id, "type": "subscribe", "payload": payload });
                    if let Err(error) = socket.send(message).await {
                        let _ = sent.send(Err(error.clone()));
                        break error;
                    }
                    subscriptions.insert(id, events);
                    let _ = sent.send(Ok(()));
                }
                Some(Command::Complete { id }) => {
                    if subscriptions.remove(&id).is_some()
                        && let Err(error) = socket.send(json!({ "id": id, "type": "complete" })).await
                    {
                        break error;
                    }
                }
            },
            said = socket.next() => match said {
                Ok((id, said)) => {
                    let ends = !matches!(said, Upstream::Next(_));
                    if let Some(events) = subscriptions.get(&id) {
                        let _ = events.send(Ok(said));
                    }
                    if ends {
                        subscriptions.remove(&id);
                    }
                }
                Err(error) => break error,
            },
        }
    };
    if let Some(connection) = weak.upgrade() {
        connection.broken.store(true, Ordering::Release);
        connections.forget(identity, &connection);
    }
    for events in subscriptions.into_values() {
        let _ = events.send(Err(broke.clone()));
    }
    fail_waiting(&mut commands, &broke);
}

/// Tells every subscription waiting on a connection that failed why.
fn fail_waiting(commands: &mut mpsc::UnboundedReceiver<Command>, error: &UpstreamError) {
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Subscribe { sent, .. } = command {
            let _ = sent.send(Err(error.clone()));
        }
    }
}

/// The byte stream under a WebSocket: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A `graphql-transport-ws` connection to a subgraph, acknowledged.
struct WebSocketConnection {
    socket: WebSocketStream<Box<dyn Stream>>,
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
) -> Result<WebSocketStream<Box<dyn Stream>>, UpstreamError> {
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
    let stream: Box<dyn Stream> = if secure {
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

impl WebSocketConnection {
    /// Connects to `url` (a `ws://` or `wss://` one) and initialises with `init` within
    /// `init_timeout`.
    async fn open(
        url: &str,
        init: Value,
        init_timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Self, UpstreamError> {
        let mut ws_request = url
            .into_client_request()
            .map_err(|error| UpstreamError::Url(format!("{url}: {error}")))?;
        ws_request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let opened = async {
            let socket = connect(ws_request, tls).await?;
            let mut upstream = Self { socket };
            upstream
                .send(json!({ "type": "connection_init", "payload": init }))
                .await?;
            upstream.wait_for_ack().await?;
            Ok::<_, UpstreamError>(upstream)
        };
        tokio::time::timeout(init_timeout, opened)
            .await
            .map_err(|_| UpstreamError::InitTimeout)?
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

    /// What the subgraph says next to one of the subscriptions: its id, and what.
    async fn next(&mut self) -> Result<(String, Upstream), UpstreamError> {
        loop {
            let message = self.read().await?;
            let kind = message.get("type").and_then(Value::as_str);
            let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
            match (kind, id) {
                (Some("ping"), _) => self.send(json!({ "type": "pong" })).await?,
                (Some("pong"), _) => {}
                (Some("next"), Some(id)) => {
                    let payload = message.get("payload").cloned().unwrap_or(Value::Null);
                    let response = SubgraphResponse::from_json(payload)
                        .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
                    return Ok((id, Upstream::Next(response)));
                }
                (Some("error"), Some(id)) => {
                    let errors = match message.get("payload") {
                        Some(Value::Array(errors)) => errors.clone(),
                        Some(other) => vec![other.clone()],
                        None => Vec::new(),
                    };
                    return Ok((id, Upstream::Errors(errors)));
                }
                (Some("complete"), Some(id)) => return Ok((id, Upstream::Complete)),
                (other, _) => {
                    return Err(UpstreamError::Protocol(format!(
                        "unexpected message {other:?}"
                    )));
                }
            }
        }
    }

    /// Ends the connection, politely.
    async fn close(mut self) {
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
