//! Demand control through the real binary: the supergraph carries every connection's
//! `@listSize`, an operation estimated over the maximum is refused before any subgraph is
//! asked, ordinary operations pass and their estimates show on `/metrics`, a cost rate
//! limit charges the estimate, and subgraph answers, client responses and entity batches
//! over their caps fail cleanly with bounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use axum::body::{Body, Bytes};
use gantry_kit::db::DatabaseSettings;
use gantry_kit::keys::SigningKey;
use serde_json::{Value, json};

use crate::edge::{key_file, peak_rss, post, serve_with, toy_subgraph};
use crate::helpers::{Process, TestApp, error_code, start};

/// `latestPosts(first: 100) → author → posts(first: 100) → …`, five lists of 100 deep in
/// 202 bytes: the shape that took `gantry serve` to 4 GB before costs were estimated.
fn nested_posts_attack() -> String {
    let mut query = String::from("{latestPosts(first:100){edges{node{");
    for _ in 0..4 {
        query.push_str("author{posts(first:100){edges{node{");
    }
    query.push_str("id body");
    let opens = query.matches('{').count();
    query.push_str(&"}".repeat(opens));
    query
}

/// The product's supergraph SDL, composed as `gantry serve` composes it.
async fn product_supergraph() -> String {
    let common =
        crate::helpers::settings(std::path::Path::new("/nonexistent"), "sqlite::memory:", &[]);
    let db = gantry_kit::db::connect(&DatabaseSettings {
        url: "sqlite::memory:".into(),
        max_connections: Some(1),
    })
    .await
    .unwrap();
    let subgraphs = gantry::commands::serve::InProcessSubgraphs::new(
        &common,
        db,
        SigningKey::ephemeral().unwrap(),
        None,
        None,
    )
    .unwrap();
    subgraphs.supergraph().await.unwrap().sdl().to_owned()
}

#[tokio::test]
async fn the_composed_supergraph_sizes_every_connection_by_first() {
    let sdl = product_supergraph().await;
    let connections: Vec<&str> = sdl
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("(first: Int = 20") && line.contains("Connection"))
        .collect();
    // latestPosts, feed, User.posts / followers / following, Post.comments
    assert_eq!(connections.len(), 6, "{sdl}");
    for line in connections {
        assert!(
            line.contains(r#"@listSize(slicingArguments: ["first"], sizedFields: ["edges"])"#),
            "{line}"
        );
    }
}

/// A subgraph server that answers every request with an error and counts them.
async fn counting_subgraph(hits: Arc<AtomicUsize>) -> String {
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(json!({ "data": null, "errors": [{ "message": "counted" }] })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

/// `gantry gateway` in front of subgraphs, with `flags`.
async fn gateway(dir: &tempfile::TempDir, flags: &[&str]) -> Process {
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let mut args = vec!["gateway"];
    args.extend_from_slice(flags);
    start(
        &args,
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await
}

#[tokio::test]
async fn the_nested_posts_attack_is_refused_with_its_cost_before_any_subgraph_is_asked() {
    let hits = Arc::new(AtomicUsize::new(0));
    let url = counting_subgraph(hits.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let sdl = product_supergraph()
        .await
        .replace("http://in-process.invalid/users", &url)
        .replace("http://in-process.invalid/posts", &url);
    let file = dir.path().join("supergraph.graphql");
    std::fs::write(&file, sdl).unwrap();
    let gantry = gateway(&dir, &["--supergraph", &file.display().to_string()]).await;
    let client = reqwest::Client::new();
    let attack = nested_posts_attack();

    let (status, body) = post(&client, &gantry.address, json!({ "query": attack })).await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_code(&body),
        Some("COST_ESTIMATED_TOO_EXPENSIVE"),
        "{body}"
    );
    let cost = &body["errors"][0]["extensions"]["cost"];
    assert_eq!(cost["max"], 10_000, "{body}");
    assert!(
        cost["estimated"].as_u64().unwrap() > 10_000_000_000,
        "{body}"
    );
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no subgraph was asked");

    // The same gateway does ask the subgraph for an ordinary operation.
    let (_, body) = post(
        &client,
        &gantry.address,
        json!({ "query": "{ latestPosts(first: 20) { edges { node { id body } } } }" }),
    )
    .await;
    assert!(hits.load(Ordering::SeqCst) > 0, "{body}");
}

const FEED: &str = "query SignedInFeed { feed(first: 20) { edges { node { id body createdAt author { id username displayName } likeCount commentCount viewerHasLiked comments(first: 3) { edges { node { id body author { id username } } } } } } pageInfo { hasNextPage endCursor } } }";

async fn create_post(app: &TestApp, token: &str, body: &str) {
    let created = app
        .graphql(
            "mutation($b: String!) { createPost(input: { body: $b }) { id } }",
            json!({ "b": body }),
            Some(token),
        )
        .await;
    assert_eq!(created["errors"], Value::Null, "{created}");
}

/// The value of the sample `name` in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn an_ordinary_feed_passes_and_metrics_show_the_cost_histogram() {
    let app = serve_with(&[]).await;
    let token = app.register("alice").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    create_post(&app, &token, "hello").await;

    let feed = app.graphql(FEED, json!({}), Some(&token)).await;
    let (status, refused) = post(
        &reqwest::Client::new(),
        &app.address.to_string(),
        json!({ "query": nested_posts_attack() }),
    )
    .await;
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(feed["errors"], Value::Null, "{feed}");
    assert_eq!(feed["data"]["feed"]["edges"][0]["node"]["body"], "hello");
    assert_eq!(status, 400, "{refused}");
    assert_eq!(error_code(&refused), Some("COST_ESTIMATED_TOO_EXPENSIVE"));
    assert!(
        metrics.contains("# TYPE gantry_operation_cost histogram"),
        "{metrics}"
    );
    // The feed (cost 261) and the attack; registering and posting cost 10 + 1 + … each.
    let count = sample(&metrics, "gantry_operation_cost_count").unwrap();
    assert!(count >= 4, "{metrics}");
    assert_eq!(
        sample(&metrics, "gantry_operation_cost_bucket{le=\"+Inf\"}"),
        Some(count)
    );
    let over_a_million =
        count - sample(&metrics, "gantry_operation_cost_bucket{le=\"1000000\"}").unwrap();
    assert_eq!(over_a_million, 1, "only the attack: {metrics}");
}

#[tokio::test]
async fn a_cost_rate_limit_charges_each_operation_its_estimate() {
    let app = serve_with(&["--rate-limit-cost", "100", "--response-cache", "false"]).await;
    let client = reqwest::Client::new();
    // 1 + 20 × (edge 1 + post 1) = 41 per request.
    let latest = json!({ "query": "{ latestPosts { edges { node { id } } } }" });
    for _ in 0..2 {
        let (status, body) = post(&client, &app.address.to_string(), latest.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(&client, &app.address.to_string(), latest).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
}

#[tokio::test]
async fn an_entity_batch_over_the_representations_cap_fails_only_that_fetch() {
    let app = serve_with(&[
        "--max-entity-representations",
        "2",
        "--response-cache",
        "false",
    ])
    .await;
    for name in ["ann", "ben", "cat"] {
        let token = app.register(name).await["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        create_post(&app, &token, &format!("by {name}")).await;
    }
    let query = |first: u32| {
        format!(
            "{{ latestPosts(first: {first}) {{ edges {{ node {{ body author {{ username }} }} }} }} }}"
        )
    };

    let three = app.graphql(&query(3), json!({}), None).await;
    let two = app.graphql(&query(2), json!({}), None).await;

    assert_eq!(
        error_code(&three),
        Some("TOO_MANY_REPRESENTATIONS"),
        "{three}"
    );
    assert_eq!(three["errors"][0]["extensions"]["limit"], 2, "{three}");
    assert_eq!(three["errors"].as_array().unwrap().len(), 1, "{three}");
    let edges = three["data"]["latestPosts"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3, "{three}");
    for edge in edges {
        assert!(edge["node"]["body"].as_str().unwrap().starts_with("by "));
        assert_eq!(edge["node"]["author"], Value::Null, "{three}");
    }
    assert_eq!(
        two["errors"],
        Value::Null,
        "two authors are within the cap: {two}"
    );
    assert_eq!(
        two["data"]["latestPosts"]["edges"][0]["node"]["author"]["username"],
        "cat"
    );
}

struct Big;

#[Object(name = "Query")]
impl Big {
    async fn big(&self) -> Option<String> {
        None
    }
}

/// A subgraph whose `big` answer never ends: its SDL for composition, then an endless
/// JSON string for any other operation.
async fn endless_subgraph() -> String {
    let schema = Schema::build(Big, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move |body: String| {
            let schema = schema.clone();
            async move {
                if body.contains("_service") {
                    let request: async_graphql::Request = serde_json::from_str(&body).unwrap();
                    let answer = serde_json::to_vec(&schema.execute(request).await).unwrap();
                    return axum::response::Response::new(Body::from(answer));
                }
                let start = futures::stream::once(async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"{\"data\":{\"big\":\""))
                });
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let endless = futures::stream::repeat_with(move || Ok(chunk.clone()));
                let mut response = axum::response::Response::new(Body::from_stream(
                    futures::StreamExt::chain(start, endless),
                ));
                response.headers_mut().insert(
                    "content-type",
                    axum::http::HeaderValue::from_static("application/json"),
                );
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

#[tokio::test]
async fn an_endless_subgraph_answer_fails_at_the_cap_and_memory_stays_bounded() {
    let big = format!("big={}", endless_subgraph().await);
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(
        &dir,
        &["--subgraph", &big, "--max-response-bytes", "1048576"],
    )
    .await;
    let client = reqwest::Client::new();
    post(
        &client,
        &gantry.address,
        json!({ "query": "{ __typename }" }),
    )
    .await;
    let before = peak_rss(&gantry);

    let answers = futures::future::join_all(
        (0..20).map(|_| post(&client, &gantry.address, json!({ "query": "{ big }" }))),
    )
    .await;

    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["data"], json!({ "big": null }), "{body}");
        assert_eq!(error_code(body), Some("RESPONSE_TOO_LARGE"), "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["limit"], 1_048_576,
            "{body}"
        );
    }
    let grown = peak_rss(&gantry).saturating_sub(before);
    assert!(
        grown < 256 * 1024 * 1024,
        "20 endless answers grew the peak by {} MB",
        grown / 1024 / 1024
    );
    let health = reqwest::get(format!("http://{}/health", gantry.address))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

struct OneHalf;

#[Object(name = "Query")]
impl OneHalf {
    async fn a(&self) -> String {
        "a".repeat(600)
    }
}

struct OtherHalf;

#[Object(name = "Query")]
impl OtherHalf {
    async fn b(&self) -> String {
        "b".repeat(600)
    }
}

#[tokio::test]
async fn a_response_over_the_cap_is_refused_even_when_each_subgraph_answer_fits() {
    let a = format!("a={}", toy_subgraph(OneHalf).await);
    let b = format!("b={}", toy_subgraph(OtherHalf).await);
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(
        &dir,
        &[
            "--subgraph",
            &a,
            "--subgraph",
            &b,
            "--max-response-bytes",
            "1000",
        ],
    )
    .await;
    let client = reqwest::Client::new();

    let (_, one) = post(&client, &gantry.address, json!({ "query": "{ a }" })).await;
    let (_, both) = post(&client, &gantry.address, json!({ "query": "{ a b }" })).await;

    assert_eq!(one["errors"], Value::Null, "600 bytes fit: {one}");
    assert_eq!(error_code(&both), Some("RESPONSE_TOO_LARGE"), "{both}");
    assert_eq!(both["errors"][0]["extensions"]["limit"], 1000, "{both}");
    assert!(both.get("data").is_none(), "{both}");
}
