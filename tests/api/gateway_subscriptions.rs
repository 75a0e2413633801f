//! Subscriptions through the real `gantry gateway` process: two subgraphs this test
//! serves (`reviews` owns `Subscription.reviewAdded` over graphql-transport-ws, `people`
//! owns `User.name`), and the `graphql-ws` and `graphql-sse` npm clients subscribed at
//! once; they share one upstream subscription, each event comes back with the field the
//! other subgraph resolves, and `/metrics` shows everything closed once they leave.

use async_graphql::futures_util::Stream;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{
    EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject, Subscription,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::browser::node;
use crate::gateway::key_file;
use crate::helpers::start;

#[derive(Clone, SimpleObject)]
struct Review {
    body: String,
    author: Author,
}

/// `User` as `reviews` knows it: the key only.
#[derive(Clone, SimpleObject)]
#[graphql(name = "User")]
struct Author {
    id: ID,
}

struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    async fn review_count(&self) -> i32 {
        0
    }
    #[graphql(entity)]
    async fn user_by_id(&self, id: ID) -> Author {
        Author { id }
    }
}

struct ReviewsSubscription(broadcast::Sender<Review>);

#[Subscription(name = "Subscription")]
impl ReviewsSubscription {
    async fn review_added(&self) -> impl Stream<Item = Review> {
        futures::stream::unfold(self.0.subscribe(), |mut receiver| async move {
            let review = receiver.recv().await.ok()?;
            Some((review, receiver))
        })
    }
}

type ReviewsSchema = Schema<ReviewsQuery, EmptyMutation, ReviewsSubscription>;

async fn reviews_ws(
    State(schema): State<ReviewsSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| GraphQLWebSocket::new(stream, schema, protocol).serve())
}

#[derive(SimpleObject)]
#[graphql(name = "User")]
struct Person {
    id: ID,
    name: String,
}

struct PeopleQuery;

#[Object(name = "Query")]
impl PeopleQuery {
    async fn people_count(&self) -> i32 {
        0
    }
    #[graphql(entity)]
    async fn user_by_id(&self, id: ID) -> Person {
        Person {
            name: format!("person {}", id.as_str()),
            id,
        }
    }
}

async fn listen(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

/// A gauge's value in a Prometheus scrape (0 when absent).
fn gauge(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (at most 20 s) until `/metrics` shows both subscription gauges at these values.
async fn until_gauges(metrics: &str, clients: f64, upstreams: f64) {
    let mut scrape = String::new();
    for _ in 0..200 {
        scrape = reqwest::get(metrics).await.unwrap().text().await.unwrap();
        if gauge(&scrape, "gantry_subscriptions_active") == clients
            && gauge(&scrape, "gantry_subscription_upstreams_active") == upstreams
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("expected {clients} subscriptions and {upstreams} upstreams:\n{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_ws_and_graphql_sse_clients_share_one_upstream_through_the_gateway_process() {
    let published = broadcast::channel::<Review>(16).0;
    let reviews = Schema::build(
        ReviewsQuery,
        EmptyMutation,
        ReviewsSubscription(published.clone()),
    )
    .enable_federation()
    .enable_subscription_in_federation()
    .finish();
    let queries = reviews.clone();
    let reviews_url = listen(
        Router::new()
            .route(
                "/graphql",
                post(move |Json(request): Json<async_graphql::Request>| {
                    let schema = queries.clone();
                    async move { Json(schema.execute(request).await) }
                })
                .get(reviews_ws),
            )
            .with_state(reviews),
    )
    .await;
    let people = Schema::build(PeopleQuery, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let people_url = listen(Router::new().route(
        "/graphql",
        post(move |Json(request): Json<async_graphql::Request>| {
            let schema = people.clone();
            async move { Json(schema.execute(request).await) }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &format!("reviews={reviews_url}"),
            "--subgraph",
            &format!("people={people_url}"),
            "--recompose-interval-secs",
            "0",
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;
    let url = format!("http://{}/graphql", gateway.address);
    let metrics = format!("http://{}/metrics", gateway.address);
    let query = "subscription { reviewAdded { body author { name } } }";

    let clients: Vec<_> = ["ws", "sse"]
        .into_iter()
        .map(|transport| {
            let url = url.clone();
            tokio::spawn(async move {
                node(
                    "subscribe.mjs",
                    &[transport, &url, "--query", query, "--take", "1"],
                )
                .await
            })
        })
        .collect();
    until_gauges(&metrics, 2.0, 1.0).await;
    for _ in 0..200 {
        if published.receiver_count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        published.receiver_count(),
        1,
        "the subgraph holds one subscription"
    );
    published
        .send(Review {
            body: "live".into(),
            author: Author { id: ID::from("u1") },
        })
        .ok();

    for client in futures::future::join_all(clients).await {
        let (ok, output) = client.unwrap();
        assert!(ok, "{output}");
        let result: Value = serde_json::from_str(output.lines().last().unwrap()).unwrap();
        assert_eq!(
            result["events"],
            json!([{ "data": { "reviewAdded": { "body": "live", "author": { "name": "person u1" } } } }])
        );
    }
    until_gauges(&metrics, 0.0, 0.0).await;
}
