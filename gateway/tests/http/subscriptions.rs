//! Subscriptions through the gateway, over real sockets: two federation subgraphs this
//! test serves (`reviews` owns `Subscription.reviewAdded` and speaks graphql-transport-ws
//! on its `/graphql`; `people` owns `User.name`), a gateway built from them, and clients
//! on each transport — the `graphql-ws` and `graphql-sse` npm clients, a WebSocket
//! speaking the protocol frame by frame, and Apollo's multipart over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::futures_util::Stream;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Context, Data, EmptyMutation, ID, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use gantry_gateway::app::{GatewayApp, GatewaySettings, SubgraphUrl, SupergraphSource, TokenKeys};
use gantry_gateway::service::GatewayService;
use gantry_gateway::subscriptions::{SubscriptionSettings, Subscriptions};
use gantry_gateway::{SubgraphSdl, Supergraph, SupergraphOptions};
use gantry_identity::jwt::{JwtSettings, TokenSigner};
use gantry_identity::keys::{KeySettings, SigningKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::run_node;

/// A review as the `reviews` subgraph publishes it.
#[derive(Clone, SimpleObject)]
pub(crate) struct Review {
    id: ID,
    body: String,
    product_id: ID,
    author: User,
}

/// `User` as `reviews` knows it: the key only.
#[derive(Clone, SimpleObject)]
pub(crate) struct User {
    id: ID,
}

/// What the `reviews` subgraph's subscriptions see: published reviews, and how many
/// subscriptions it holds open.
#[derive(Clone)]
pub(crate) struct Reviews {
    pub published: broadcast::Sender<Review>,
    pub open: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
    /// WebSocket connections the gateway holds open to it.
    pub connections: Arc<AtomicUsize>,
    /// How many users the `people` subgraph resolved as entities.
    pub entity_fetches: Arc<AtomicUsize>,
    /// Held (written) to keep `people` from resolving entities until released.
    pub people_gate: Arc<tokio::sync::RwLock<()>>,
}

/// Counts a subgraph subscription as open until its stream is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `authorization` header the gateway sent in `connection_init`.
struct InitHeaders(Option<String>);

struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    async fn review_count(&self) -> i32 {
        0
    }
    #[graphql(entity)]
    async fn user_by_id(&self, id: ID) -> User {
        User { id }
    }
}

struct ReviewsSubscription;

#[Subscription(name = "Subscription")]
impl ReviewsSubscription {
    async fn review_added(
        &self,
        context: &Context<'_>,
        product_id: ID,
    ) -> impl Stream<Item = Review> {
        let reviews = context.data_unchecked::<Reviews>();
        reviews.opened.fetch_add(1, Ordering::SeqCst);
        reviews.open.fetch_add(1, Ordering::SeqCst);
        let open = Open(reviews.open.clone());
        let receiver = reviews.published.subscribe();
        futures::stream::unfold((receiver, open), |(mut receiver, open)| async move {
            let review = receiver.recv().await.ok()?;
            Some((review, (receiver, open)))
        })
        .filter(move |review| {
            let wanted = review.product_id == product_id;
            async move { wanted }
        })
    }

    /// Who the gateway said the caller is, in `connection_init`.
    async fn caller(&self, context: &Context<'_>) -> impl Stream<Item = String> {
        let header = context
            .data_opt::<InitHeaders>()
            .and_then(|headers| headers.0.clone())
            .unwrap_or_else(|| "anonymous".to_owned());
        futures::stream::iter([header])
    }
}

type ReviewsSchema = Schema<ReviewsQuery, EmptyMutation, ReviewsSubscription>;

async fn reviews_ws(
    State((schema, reviews)): State<(ReviewsSchema, Reviews)>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| async move {
            reviews.connections.fetch_add(1, Ordering::SeqCst);
            let open = Open(reviews.connections.clone());
            GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(|payload: Value| async move {
                    let mut data = Data::default();
                    let header = payload["headers"]["authorization"]
                        .as_str()
                        .map(str::to_owned);
                    data.insert(InitHeaders(header));
                    Ok(data)
                })
                .serve()
                .await;
            drop(open);
        })
}

struct PeopleQuery;

#[derive(SimpleObject)]
struct Person {
    id: ID,
    name: String,
}

#[Object(name = "Query")]
impl PeopleQuery {
    #[graphql(entity)]
    async fn user_by_id(&self, context: &Context<'_>, id: ID) -> PersonEntity {
        let reviews = context.data_unchecked::<Reviews>();
        let _open = reviews.people_gate.read().await;
        reviews.entity_fetches.fetch_add(1, Ordering::SeqCst);
        PersonEntity(Person {
            name: format!("person {}", id.as_str()),
            id,
        })
    }
    async fn people_count(&self) -> i32 {
        0
    }
}

/// `User` as `people` owns it, with a name.
struct PersonEntity(Person);

#[Object(name = "User")]
impl PersonEntity {
    async fn id(&self) -> &ID {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
}

async fn listen(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

/// A TCP listener whose connections speak TLS (a failed handshake is skipped).
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `router` over TLS with `acceptor`; its `https://` GraphQL URL.
async fn listen_tls(router: Router, acceptor: tokio_rustls::TlsAcceptor) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = tcp.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(TlsListener { tcp, acceptor }, router).await });
    format!("https://{address}/graphql")
}

/// A subgraph's SDL, as it hands it to composition.
async fn sdl<Q, M, S>(schema: &Schema<Q, M, S>, name: &str, url: &str) -> SubgraphSdl
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    let answer = schema
        .execute("{ _service { sdl } }")
        .await
        .data
        .into_json()
        .expect("JSON");
    SubgraphSdl {
        name: name.to_owned(),
        url: url.to_owned(),
        sdl: answer["_service"]["sdl"]
            .as_str()
            .expect("an SDL")
            .to_owned(),
    }
}

/// The two subgraphs, served; the reviews' handle, both URLs, and both SDLs.
pub(crate) async fn subgraphs() -> (Reviews, Vec<SubgraphUrl>, Vec<SubgraphSdl>) {
    subgraphs_serving_reviews_with(None).await
}

/// The two subgraphs, `reviews` over TLS with `tls` when given (`https://`).
pub(crate) async fn subgraphs_serving_reviews_with(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (Reviews, Vec<SubgraphUrl>, Vec<SubgraphSdl>) {
    let reviews = Reviews {
        published: broadcast::channel(64).0,
        open: Arc::new(AtomicUsize::new(0)),
        opened: Arc::new(AtomicUsize::new(0)),
        connections: Arc::new(AtomicUsize::new(0)),
        entity_fetches: Arc::new(AtomicUsize::new(0)),
        people_gate: Arc::new(tokio::sync::RwLock::new(())),
    };
    let schema = Schema::build(ReviewsQuery, EmptyMutation, ReviewsSubscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(reviews.clone())
        .finish();
    let queries = schema.clone();
    let sdl_schema = schema.clone();
    let reviews_router = Router::new()
        .route(
            "/graphql",
            post(move |Json(request): Json<async_graphql::Request>| {
                let schema = queries.clone();
                async move { Json(schema.execute(request).await) }
            })
            .get(reviews_ws),
        )
        .with_state((schema, reviews.clone()));
    let reviews_url = match tls {
        Some(acceptor) => listen_tls(reviews_router, acceptor).await,
        None => listen(reviews_router).await,
    };
    let people = Schema::build(PeopleQuery, EmptyMutation, async_graphql::EmptySubscription)
        .enable_federation()
        .data(reviews.clone())
        .finish();
    let people_sdl = people.clone();
    let people_url = listen(Router::new().route(
        "/graphql",
        post(move |Json(request): Json<async_graphql::Request>| {
            let schema = people.clone();
            async move { Json(schema.execute(request).await) }
        }),
    ))
    .await;
    let sdls = vec![
        sdl(&sdl_schema, "reviews", &reviews_url).await,
        sdl(&people_sdl, "people", &people_url).await,
    ];
    (
        reviews,
        vec![
            SubgraphUrl::new("reviews", reviews_url),
            SubgraphUrl::new("people", people_url),
        ],
        sdls,
    )
}

pub(crate) struct Gateway {
    pub base: String,
    pub subscriptions: Arc<Subscriptions>,
    service: Arc<GatewayService>,
    key: SigningKey,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

pub(crate) async fn gateway(
    subgraphs: Vec<SubgraphUrl>,
    settings: SubscriptionSettings,
) -> Gateway {
    gateway_with(
        SupergraphSource::Subgraphs(subgraphs),
        GatewaySettings {
            subscriptions: settings,
            ..GatewaySettings::default()
        },
    )
    .await
}

/// A gateway on `source` with `settings`, serving on a free port.
pub(crate) async fn gateway_with(source: SupergraphSource, settings: GatewaySettings) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::load(&KeySettings {
        data_dir: dir.path().to_path_buf(),
        ..KeySettings::default()
    })
    .expect("a generated key");
    let app = GatewayApp::builder(settings)
        .supergraph(source)
        .token_keys(TokenKeys::Keys(vec![key.public.clone()]))
        .build()
        .await
        .expect("the gateway builds");
    let subscriptions = app.subscriptions.clone();
    let service = app.service.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run(listener, async {
        let _ = stopped.await;
    }));
    Gateway {
        base,
        subscriptions,
        service,
        key,
        _dir: dir,
        _stop: stop,
    }
}

impl Gateway {
    pub fn url(&self) -> String {
        format!("{}/graphql", self.base)
    }

    /// A token for user `user`, valid for `lifetime_secs`.
    pub fn token(&self, user: uuid::Uuid, lifetime_secs: u64) -> String {
        let settings = JwtSettings {
            access_ttl: Duration::from_secs(lifetime_secs),
            ..JwtSettings::default()
        };
        TokenSigner::new(self.key.clone(), settings)
            .sign(user, uuid::Uuid::now_v7())
            .expect("a token")
    }

    /// Waits until `what` holds, for at most 20 s (a wait for a state, not a timing).
    pub async fn until(&self, what: impl Fn(&Subscriptions) -> bool) {
        for _ in 0..400 {
            if what(&self.subscriptions) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "still {} subscriptions and {} upstreams",
            self.subscriptions.active(),
            self.subscriptions.upstreams()
        );
    }
}

impl Reviews {
    /// Waits until the subgraph holds `count` subscriptions, so a review published next
    /// reaches them (at most 20 s: a wait for a state, not a timing).
    pub async fn until_subscribed(&self, count: usize) {
        for _ in 0..400 {
            if self.published.receiver_count() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the subgraph holds {} subscriptions",
            self.published.receiver_count()
        );
    }

    /// Waits until the subgraph holds no subscription open (at most 20 s), and says so if
    /// one is still held then.
    pub async fn until_released(&self) {
        for _ in 0..400 {
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the subgraph still holds {} subscriptions",
            self.open.load(Ordering::SeqCst)
        );
    }
}

pub(crate) fn review(id: &str, product: &str, author: &str) -> Review {
    Review {
        id: ID::from(id),
        body: format!("review {id}"),
        product_id: ID::from(product),
        author: User {
            id: ID::from(author),
        },
    }
}

pub(crate) const REVIEW_ADDED: &str =
    "subscription($product: ID!) { reviewAdded(productId: $product) { body author { name } } }";

/// A client speaking graphql-transport-ws frame by frame.
pub(crate) struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects offering `protocol` (or no subprotocol at all).
    pub async fn connect(gateway: &Gateway, protocol: Option<&str>) -> Self {
        let mut request = gateway
            .url()
            .replace("http://", "ws://")
            .into_client_request()
            .expect("a request");
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocol.parse().expect("a value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the gateway upgrades");
        Self { socket }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("sent");
    }

    /// The next protocol message (pings answered), or the close code.
    pub async fn receive(&mut self) -> Result<Value, u16> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Ok(message);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(1005, |frame| u16::from(frame.code)));
                }
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    }

    /// Connects with a receive buffer of its own small size, so that a client that does
    /// not read holds up its connection soon.
    pub async fn connect_with_small_buffer(gateway: &Gateway) -> Self {
        let mut request = gateway
            .url()
            .replace("http://", "ws://")
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("a value"),
        );
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .set_recv_buffer_size(64 * 1024)
            .expect("a buffer size");
        let address = gateway
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        let stream = socket.connect(address).await.expect("connected");
        let (socket, _) = tokio_tungstenite::client_async(
            request,
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await
        .expect("the gateway upgrades");
        Self { socket }
    }

    /// The next text message as it came (pings answered).
    pub async fn receive_text(&mut self) -> String {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str().contains(r#""type":"ping""#) {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return text.as_str().to_owned();
                }
                Some(Ok(_)) => continue,
                other => panic!("the connection ended: {other:?}"),
            }
        }
    }

    pub async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        assert_eq!(
            self.receive().await,
            Ok(json!({ "type": "connection_ack" }))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_ws_client_receives_events_with_fields_another_subgraph_resolves() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let client = tokio::spawn({
        let url = gateway.url();
        async move {
            run_node(
                "subscribe.mjs",
                &[
                    "ws",
                    &url,
                    "--query",
                    REVIEW_ADDED,
                    "--variables",
                    r#"{"product":"p1"}"#,
                    "--take",
                    "2",
                ],
            )
            .await
        }
    });
    gateway.until(|s| s.upstreams() == 1).await;
    reviews.until_subscribed(1).await;
    reviews.published.send(review("r1", "p2", "u9")).ok();
    reviews.published.send(review("r2", "p1", "u1")).ok();
    reviews.published.send(review("r3", "p1", "u2")).ok();

    let (ok, output) = client.await.expect("the client ran");
    assert!(ok, "{output}");
    let result: Value =
        serde_json::from_str(output.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(
        result["events"],
        json!([
            { "data": { "reviewAdded": { "body": "review r2", "author": { "name": "person u1" } } } },
            { "data": { "reviewAdded": { "body": "review r3", "author": { "name": "person u2" } } } },
        ])
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_sse_client_receives_events_and_leaving_closes_the_upstream() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let client = tokio::spawn({
        let url = gateway.url();
        async move {
            run_node(
                "subscribe.mjs",
                &[
                    "sse",
                    &url,
                    "--query",
                    REVIEW_ADDED,
                    "--variables",
                    r#"{"product":"p1"}"#,
                    "--take",
                    "1",
                ],
            )
            .await
        }
    });
    gateway.until(|s| s.upstreams() == 1).await;
    reviews.until_subscribed(1).await;
    reviews.published.send(review("r1", "p1", "u1")).ok();

    let (ok, output) = client.await.expect("the client ran");
    assert!(ok, "{output}");
    let result: Value =
        serde_json::from_str(output.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(
        result["events"],
        json!([{ "data": { "reviewAdded": { "body": "review r1", "author": { "name": "person u1" } } } }])
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
    reviews.until_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_share_one_upstream_until_the_last_leaves() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let subscribe = json!({ "id": "a", "type": "subscribe", "payload": {
        "query": REVIEW_ADDED, "variables": { "product": "p1" }
    } });
    let mut first = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    let mut second = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    first.init(json!({})).await;
    second.init(json!({})).await;
    first.send(subscribe.clone()).await;
    second.send(subscribe).await;
    gateway
        .until(|s| s.active() == 2 && s.upstreams() == 1)
        .await;
    // A different variable is a different upstream subscription.
    first
        .send(json!({ "id": "b", "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p2" }
        } }))
        .await;
    gateway
        .until(|s| s.active() == 3 && s.upstreams() == 2)
        .await;
    reviews.until_subscribed(2).await;

    reviews.published.send(review("r1", "p1", "u1")).ok();
    let expected = json!({ "id": "a", "type": "next", "payload": {
        "data": { "reviewAdded": { "body": "review r1", "author": { "name": "person u1" } } }
    } });
    assert_eq!(first.receive().await, Ok(expected.clone()));
    assert_eq!(second.receive().await, Ok(expected));
    assert_eq!(reviews.opened.load(Ordering::SeqCst), 2);

    first.send(json!({ "id": "a", "type": "complete" })).await;
    gateway
        .until(|s| s.active() == 2 && s.upstreams() == 2)
        .await;
    drop(second);
    gateway
        .until(|s| s.active() == 1 && s.upstreams() == 1)
        .await;
    drop(first);
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_subscriptions_share_connections_per_identity_up_to_the_bound() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(
        urls,
        SubscriptionSettings {
            upstream_per_connection: 2,
            ..SubscriptionSettings::default()
        },
    )
    .await;
    let subscribe = |id: &str, product: &str| {
        json!({ "id": id, "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": product }
        } })
    };
    let mut anonymous = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    anonymous.init(json!({})).await;
    for (id, product) in [("a", "p1"), ("b", "p2"), ("c", "p3")] {
        anonymous.send(subscribe(id, product)).await;
    }
    // Three upstream subscriptions, two to a connection: two connections.
    gateway
        .until(|s| s.upstreams() == 3 && s.upstream_connections() == 2)
        .await;
    reviews.until_subscribed(3).await;
    assert_eq!(reviews.connections.load(Ordering::SeqCst), 2);
    for (id, product) in [("a", "p1"), ("b", "p2"), ("c", "p3")] {
        reviews
            .published
            .send(review(&format!("r{id}"), product, "u1"))
            .ok();
        let received = anonymous.receive().await.expect("an event");
        assert_eq!(received["id"], id, "{received}");
        assert_eq!(
            received["payload"]["data"]["reviewAdded"]["body"],
            format!("review r{id}")
        );
    }

    // Other forwarded headers are another connection identity.
    let token = gateway.token(uuid::Uuid::now_v7(), 600);
    let mut signed_in = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    signed_in
        .init(json!({ "Authorization": format!("Bearer {token}") }))
        .await;
    signed_in.send(subscribe("d", "p1")).await;
    gateway
        .until(|s| s.upstreams() == 4 && s.upstream_connections() == 3)
        .await;

    // A connection closes with its last subscription.
    signed_in
        .send(json!({ "id": "d", "type": "complete" }))
        .await;
    gateway
        .until(|s| s.upstreams() == 3 && s.upstream_connections() == 2)
        .await;
    drop(anonymous);
    gateway
        .until(|s| s.upstreams() == 0 && s.upstream_connections() == 0)
        .await;
    for _ in 0..400 {
        if reviews.connections.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reviews.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_resolve_each_event_once() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let subscribe = json!({ "id": "a", "type": "subscribe", "payload": {
        "query": REVIEW_ADDED, "variables": { "product": "p1" }
    } });
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
        client.init(json!({})).await;
        client.send(subscribe.clone()).await;
        clients.push(client);
    }
    gateway
        .until(|s| s.active() == 3 && s.upstreams() == 1)
        .await;
    reviews.until_subscribed(1).await;

    for (event, author) in [("r1", "u1"), ("r2", "u2")] {
        reviews.published.send(review(event, "p1", author)).ok();
        let expected = json!({ "id": "a", "type": "next", "payload": {
            "data": { "reviewAdded": {
                "body": format!("review {event}"),
                "author": { "name": format!("person {author}") }
            } }
        } });
        for client in &mut clients {
            assert_eq!(client.receive().await, Ok(expected.clone()));
        }
    }
    // One entity fetch per event, not one per subscriber.
    assert_eq!(reviews.entity_fetches.load(Ordering::SeqCst), 2);
}

/// The exact `next` message of review `id` by `u1` for subscription `a`.
fn review_frame(id: &str) -> String {
    format!(
        r#"{{"id":"a","type":"next","payload":{{"data":{{"reviewAdded":{{"body":"review {id}","author":{{"name":"person u1"}}}}}}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_each_event_as_the_same_frame_while_one_not_reading_lags_alone() {
    // Events large enough that a client that stops reading fills what is buffered for
    // it (its backlog, its connection's queue and both sockets) well before the last.
    const EVENTS: usize = 400;
    const FAST: usize = 3;
    let padding = "x".repeat(64 * 1024);
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(
        urls,
        SubscriptionSettings {
            event_backlog: 64,
            ..SubscriptionSettings::default()
        },
    )
    .await;
    let subscribe = json!({ "id": "a", "type": "subscribe", "payload": {
        "query": REVIEW_ADDED, "variables": { "product": "p1" }
    } });
    let mut slow = WsClient::connect_with_small_buffer(&gateway).await;
    slow.init(json!({})).await;
    slow.send(subscribe.clone()).await;
    let received = Arc::new((0..FAST).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let mut readers = Vec::new();
    for reader in 0..FAST {
        let mut client = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
        client.init(json!({})).await;
        client.send(subscribe.clone()).await;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut frames = Vec::with_capacity(EVENTS);
            while frames.len() < EVENTS {
                frames.push(client.receive_text().await);
                received[reader].fetch_add(1, Ordering::SeqCst);
            }
            frames
        }));
    }
    gateway
        .until(|s| s.active() == FAST + 1 && s.upstreams() == 1)
        .await;
    reviews.until_subscribed(1).await;

    let ids: Vec<String> = (0..EVENTS)
        .map(|event| format!("{event}-{padding}"))
        .collect();
    for (sent, id) in ids.iter().enumerate() {
        // The readers stay within a few events (a wait for their state, not a timing).
        while received
            .iter()
            .any(|count| count.load(Ordering::SeqCst) + 8 < sent)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        reviews.published.send(review(id, "p1", "u1")).ok();
    }

    for reader in readers {
        let frames = reader.await.expect("the reader ran");
        for (frame, id) in frames.iter().zip(&ids) {
            assert!(*frame == review_frame(id), "{:.200}", frame);
        }
    }
    // The one that read nothing fell behind alone, and says so once it reads.
    let mut delivered = 0;
    let ended = loop {
        assert!(
            delivered < EVENTS,
            "every event reached the client that read none"
        );
        let frame = slow.receive_text().await;
        if frame != review_frame(&ids[delivered]) {
            break frame;
        }
        delivered += 1;
    };
    let ended: Value = serde_json::from_str(&ended).expect("JSON");
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "SUBSCRIPTION_LAGGED",
        "{ended}"
    );
    assert_eq!(
        slow.receive().await,
        Ok(json!({ "id": "a", "type": "complete" }))
    );
    // At most one entity fetch per event, whoever received it (identical fetches in
    // flight at once are shared too).
    let fetches = reviews.entity_fetches.load(Ordering::SeqCst);
    assert!(fetches <= EVENTS, "{fetches} entity fetches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_falls_too_far_behind_ends_with_subscription_lagged() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(
        urls,
        SubscriptionSettings {
            event_backlog: 2,
            ..SubscriptionSettings::default()
        },
    )
    .await;
    let mut client = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    client.init(json!({})).await;
    client
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p1" }
        } }))
        .await;
    reviews.until_subscribed(1).await;
    // The first event's entity fetch waits while the others pile up behind it.
    let gate = reviews.people_gate.write().await;
    for event in 0..20 {
        reviews
            .published
            .send(review(&format!("r{event}"), "p1", "u1"))
            .ok();
    }
    // Every event sent on to the gateway (a wait for a state, at most 20 s).
    for _ in 0..400 {
        if reviews.published.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(gate);

    let mut delivered = 0;
    let ended = loop {
        let message = client.receive().await.expect("a message");
        assert_eq!(message["type"], "next", "{message}");
        if message["payload"].get("errors").is_some() {
            break message;
        }
        delivered += 1;
    };
    assert!(delivered < 20, "{delivered} events delivered");
    let error = &ended["payload"]["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "SUBSCRIPTION_LAGGED",
        "{ended}"
    );
    assert!(
        error["extensions"]["missed"].as_u64().unwrap_or(0) > 0,
        "{ended}"
    );
    assert_eq!(
        client.receive().await,
        Ok(json!({ "id": "1", "type": "complete" }))
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_from_connection_init_is_verified_and_reaches_the_subgraph() {
    let (_reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let user = uuid::Uuid::now_v7();
    let token = gateway.token(user, 600);

    let mut signed_in = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    signed_in
        .init(json!({ "Authorization": format!("Bearer {token}") }))
        .await;
    signed_in
        .send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { caller }" } }))
        .await;
    assert_eq!(
        signed_in.receive().await,
        Ok(
            json!({ "id": "1", "type": "next", "payload": { "data": { "caller": format!("Bearer {token}") } } })
        )
    );
    assert_eq!(
        signed_in.receive().await,
        Ok(json!({ "id": "1", "type": "complete" }))
    );

    let mut forged = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    forged
        .send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } }))
        .await;
    assert_eq!(forged.receive().await, Err(4403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_with_unauthenticated_when_its_token_expires() {
    let (_reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let token = gateway.token(uuid::Uuid::now_v7(), 1);
    let mut client = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    client
        .init(json!({ "Authorization": format!("Bearer {token}") }))
        .await;
    client
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p1" }
        } }))
        .await;
    let ended = client.receive().await.expect("a message");
    assert_eq!(ended["type"], "next");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(
        client.receive().await,
        Ok(json!({ "id": "1", "type": "complete" }))
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_the_protocols_codes_and_limits_refuse() {
    let (_reviews, urls, _) = subgraphs().await;
    let gateway = gateway(
        urls,
        SubscriptionSettings {
            max_per_connection: 1,
            ..SubscriptionSettings::default()
        },
    )
    .await;
    let subscribe = |id: &str| {
        json!({ "id": id, "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p1" }
        } })
    };

    let mut early = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    early.send(subscribe("1")).await;
    assert_eq!(early.receive().await, Err(4401));

    let mut twice = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    twice.init(json!({})).await;
    twice.send(json!({ "type": "connection_init" })).await;
    assert_eq!(twice.receive().await, Err(4429));

    let mut garbled = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    garbled.init(json!({})).await;
    garbled
        .send(json!({ "type": "subscribe", "id": "1" }))
        .await;
    assert_eq!(garbled.receive().await, Err(4400));

    let mut busy = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    busy.init(json!({})).await;
    busy.send(subscribe("1")).await;
    busy.send(subscribe("2")).await;
    let refused = busy.receive().await.expect("a message");
    assert_eq!(refused["id"], "2");
    assert_eq!(refused["type"], "error");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );
    busy.send(subscribe("1")).await;
    assert_eq!(busy.receive().await, Err(4409));

    let mut invalid = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    invalid.init(json!({})).await;
    invalid
        .send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { nope }" } }))
        .await;
    let refused = invalid.receive().await.expect("a message");
    assert_eq!(refused["type"], "error");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );

    let mut no_protocol = WsClient::connect(&gateway, None).await;
    assert_eq!(no_protocol.receive().await, Err(4406));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_subscriptions_send_each_event_as_a_part_and_plain_http_refuses() {
    let (reviews, urls, _) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let client = reqwest::Client::new();
    let body = json!({ "query": REVIEW_ADDED, "variables": { "product": "p1" } });

    let plain = client
        .post(gateway.url())
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(plain.status(), 400);

    let response = client
        .post(gateway.url())
        .header(
            "accept",
            "multipart/mixed;subscriptionSpec=\"1.0\", application/json",
        )
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("multipart/mixed;boundary=\"graphql\"")
    );
    gateway.until(|s| s.upstreams() == 1).await;
    reviews.until_subscribed(1).await;
    reviews.published.send(review("r1", "p1", "u1")).ok();
    let mut response = response;
    let mut received = String::new();
    while !received.contains("review r1") {
        let chunk = response.chunk().await.expect("bytes").expect("a chunk");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains(
        r#"{"payload":{"data":{"reviewAdded":{"body":"review r1","author":{"name":"person u1"}}}}}"#
    ), "{received}");
    drop(response);
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recomposed_supergraph_keeps_live_subscriptions_and_ends_those_whose_field_is_gone() {
    let (reviews, urls, sdls) = subgraphs().await;
    let gateway = gateway(urls, SubscriptionSettings::default()).await;
    let mut kept = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    kept.init(json!({})).await;
    kept.send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription { reviewAdded(productId: \"p1\") { body } }"
    } }))
    .await;
    let mut orphaned = WsClient::connect(&gateway, Some("graphql-transport-ws")).await;
    orphaned.init(json!({})).await;
    orphaned
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p1" }
        } }))
        .await;
    gateway
        .until(|s| s.active() == 2 && s.upstreams() == 2)
        .await;
    reviews.until_subscribed(2).await;

    // `people` leaves the supergraph: `User.name` is gone.
    let reviews_only = Supergraph::compose(&sdls[..1], SupergraphOptions::default())
        .expect("the reviews subgraph composes alone");
    gateway.service.gateway().replace_supergraph(reviews_only);

    let ended = orphaned.receive().await.expect("a message");
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert!(
        ended["payload"]["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("name"),
        "{ended}"
    );
    assert_eq!(
        orphaned.receive().await,
        Ok(json!({ "id": "1", "type": "complete" }))
    );
    gateway
        .until(|s| s.active() == 1 && s.upstreams() == 1)
        .await;

    reviews.published.send(review("r1", "p1", "u1")).ok();
    assert_eq!(
        kept.receive().await,
        Ok(
            json!({ "id": "1", "type": "next", "payload": { "data": { "reviewAdded": { "body": "review r1" } } } })
        )
    );
    assert_eq!(
        reviews.opened.load(Ordering::SeqCst),
        2,
        "the kept subscription was not opened again"
    );
}
