//! The gateway as an operator and a client meet it: authentication at the edge,
//! introspection, readiness, request ids, recomposition on SIGHUP, a supergraph file, a
//! limit on operations in progress, and a graceful stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gantry::cli::{GatewayOptions, ServeArgs, SubgraphName};
use gantry_kit::jwt::{AccessClaims, JwtSettings, TokenSigner};
use gantry_kit::keys::{KeySettings, SigningKey};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_code, fresh_database, run, settings, start};

/// `gantry serve`'s app, in this process, on a fresh SQLite database.
async fn serve(options: GatewayOptions) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let common = settings(data_dir.path(), &url, &[]);
    let args = ServeArgs {
        listen: None,
        common: common.clone(),
        gateway: options,
    };
    let app = gantry::commands::serve::build(&common, &args)
        .await
        .unwrap();
    TestApp::serve(app.router, Some(app.tasks), data_dir, url).await
}

const LATEST: &str = "{ latestPosts(first: 1) { edges { node { body } } } }";

#[tokio::test]
async fn bad_tokens_are_refused_at_the_gateway_and_no_token_reads_public_data() {
    let app = serve(GatewayOptions::default()).await;
    let user = app.register("gatekeeper").await;
    let user_id: uuid::Uuid = user["user"]["id"].as_str().unwrap().parse().unwrap();
    let key = SigningKey::load(&KeySettings {
        data_dir: app.data_dir.path().into(),
        ..Default::default()
    })
    .unwrap();
    let sign = |settings: JwtSettings| {
        TokenSigner::new(key.clone(), settings)
            .sign(user_id, uuid::Uuid::now_v7())
            .unwrap()
    };
    let expired = {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            sid: uuid::Uuid::now_v7(),
            iat: now - 7200,
            exp: now - 3600,
            jti: uuid::Uuid::now_v7(),
            iss: "gantry".into(),
            aud: "gantry".into(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.public.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    };
    let other_key = SigningKey::ephemeral().unwrap();
    let forged = TokenSigner::new(other_key, JwtSettings::default())
        .sign(user_id, uuid::Uuid::now_v7())
        .unwrap();
    let real = user["accessToken"].as_str().unwrap().to_owned();
    let claims = real.split('.').nth(1).unwrap();
    let alg_none = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );

    for (what, token) in [
        ("forged", forged),
        ("alg none", alg_none),
        ("expired", expired),
        (
            "wrong issuer",
            sign(JwtSettings {
                issuer: "someone-else".into(),
                ..Default::default()
            }),
        ),
        (
            "wrong audience",
            sign(JwtSettings {
                audience: "another-app".into(),
                ..Default::default()
            }),
        ),
    ] {
        let response = app.graphql(LATEST, json!({}), Some(&token)).await;
        assert_eq!(
            error_code(&response),
            Some("UNAUTHENTICATED"),
            "{what}: {response}"
        );
        assert_eq!(response["data"], Value::Null);
    }
    let anonymous = app.graphql(LATEST, json!({}), None).await;
    assert_eq!(
        anonymous,
        json!({ "data": { "latestPosts": { "edges": [] } } })
    );
    let me = app
        .graphql("{ me { username } }", json!({}), Some(&real))
        .await;
    assert_eq!(
        me,
        json!({ "data": { "me": { "username": "gatekeeper" } } })
    );
}

#[tokio::test]
async fn introspection_shows_the_api_schema_only_and_can_be_switched_off() {
    let app = serve(GatewayOptions::default()).await;
    let types = app
        .graphql("{ __schema { types { name } } }", json!({}), None)
        .await;
    let names: Vec<&str> = types["data"]["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Post") && names.contains(&"User"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("join__")
            || n.starts_with("link__")
            || *n == "_Service"
            || *n == "_Any"),
        "{names:?}"
    );
    let post = app
        .graphql(
            "{ __type(name: \"Post\") { fields { name } } }",
            json!({}),
            None,
        )
        .await;
    assert!(
        post["data"]["__type"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "viewerHasLiked")
    );

    let closed = serve(GatewayOptions {
        introspection: false,
        ..GatewayOptions::default()
    })
    .await;
    let refused = closed
        .graphql("{ __schema { types { name } } }", json!({}), None)
        .await;
    assert_eq!(
        error_code(&refused),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{refused}"
    );
    let typename = closed.graphql("{ __typename }", json!({}), None).await;
    assert_eq!(typename, json!({ "data": { "__typename": "Query" } }));
}

#[tokio::test]
async fn ready_health_and_request_ids_answer() {
    let app = serve(GatewayOptions::default()).await;
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"]["status"], "ok");
    assert_eq!(
        app.get_json("/health").await,
        (200, json!({ "status": "ok" }))
    );

    let client = reqwest::Client::new();
    let echoed = client
        .post(app.url("/graphql"))
        .header("x-request-id", "trace-me-123")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-123");
    let generated = client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert!(!generated.headers()["x-request-id"].is_empty());
}

/// A subgraph whose schema the test switches: `v1` has `hello`, `v2` adds `goodbye`, and
/// `broken` still answers queries but hands out an SDL that does not compose.
#[derive(Clone)]
struct Switchable {
    mode: Arc<AtomicU8>,
    v1: Schema<V1, EmptyMutation, EmptySubscription>,
    v2: Schema<V2, EmptyMutation, EmptySubscription>,
}

#[derive(async_graphql::SimpleObject)]
struct Thing {
    id: async_graphql::ID,
}

struct V1;
#[Object(name = "Query")]
impl V1 {
    async fn hello(&self) -> &str {
        "hello"
    }
    #[graphql(entity)]
    async fn thing_by_id(&self, id: async_graphql::ID) -> Thing {
        Thing { id }
    }
}

struct V2;
#[Object(name = "Query")]
impl V2 {
    async fn hello(&self) -> &str {
        "hello"
    }
    async fn goodbye(&self) -> &str {
        "goodbye"
    }
    #[graphql(entity)]
    async fn thing_by_id(&self, id: async_graphql::ID) -> Thing {
        Thing { id }
    }
}

/// Serves a test subgraph on a free local port, for as long as the test runs.
async fn serve_subgraph(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

async fn switchable_handler(State(s): State<Switchable>, Json(body): Json<Value>) -> Json<Value> {
    let query = body["query"].as_str().unwrap_or_default().to_owned();
    let mode = s.mode.load(Ordering::SeqCst);
    if mode == 2 && query.contains("_service") {
        return Json(json!({ "data": { "_service": { "sdl": "type Query {" } } }));
    }
    let request = async_graphql::Request::new(query);
    let response = if mode == 0 {
        s.v1.execute(request).await
    } else {
        s.v2.execute(request).await
    };
    Json(serde_json::to_value(response).unwrap())
}

#[tokio::test]
async fn sighup_recomposes_and_a_failed_composition_keeps_the_last_good_supergraph() {
    let toy = Switchable {
        mode: Arc::new(AtomicU8::new(0)),
        v1: Schema::build(V1, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
        v2: Schema::build(V2, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
    };
    let toy_address = serve_subgraph(
        Router::new()
            .route("/graphql", post(switchable_handler))
            .with_state(toy.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let subgraph = format!("toy=http://{toy_address}/graphql");
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &subgraph,
            "--recompose-interval-secs",
            "0",
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;
    let client = reqwest::Client::new();
    let ask = async |query: &str| -> Value {
        let url = format!("http://{}/graphql", gateway.address);
        client
            .post(url)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(
        ask("{ hello }").await,
        json!({ "data": { "hello": "hello" } })
    );
    assert_eq!(
        error_code(&ask("{ goodbye }").await),
        Some("GRAPHQL_VALIDATION_FAILED")
    );

    toy.mode.store(1, Ordering::SeqCst);
    gateway.signal("HUP").await;
    gateway.wait_for_log("serving the new supergraph").await;
    assert_eq!(
        ask("{ goodbye }").await,
        json!({ "data": { "goodbye": "goodbye" } })
    );

    toy.mode.store(2, Ordering::SeqCst);
    gateway.signal("HUP").await;
    gateway
        .wait_for_log("keeping the last good supergraph")
        .await;
    assert_eq!(
        ask("{ hello goodbye }").await,
        json!({ "data": { "hello": "hello", "goodbye": "goodbye" } })
    );
}

/// A signing key in `dir`, for a gateway in front of subgraphs that issue no tokens.
pub(crate) fn key_file(dir: &std::path::Path) -> String {
    SigningKey::load(&KeySettings {
        data_dir: dir.into(),
        ..Default::default()
    })
    .unwrap();
    dir.join(gantry_kit::keys::GENERATED_KEY_FILE)
        .display()
        .to_string()
}

/// The gateway runs in a data dir of its own: it verifies the users subgraph's tokens with
/// the JWKS at the users URL the supergraph file names, not with a key it made up.
#[tokio::test]
async fn a_supergraph_file_from_compose_is_served_with_real_tokens_and_sigterm_stops_gracefully() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let users = TestApp::start(SubgraphName::Users, data_dir.clone(), url.clone(), &[]).await;
    let posts = TestApp::start(SubgraphName::Posts, data_dir.clone(), url, &[]).await;
    let subgraphs = vec![
        format!("users={}", users.url("/graphql")).parse().unwrap(),
        format!("posts={}", posts.url("/graphql")).parse().unwrap(),
    ];
    let supergraph = gantry::commands::gateway::compose_from(&reqwest::Client::new(), &subgraphs)
        .await
        .unwrap();
    let gateway_dir = tempfile::tempdir().unwrap();
    let file = gateway_dir.path().join("supergraph.graphql");
    std::fs::write(&file, supergraph.sdl()).unwrap();
    assert!(supergraph.sdl().contains("@join__type(graph: USERS)"));

    let data = gateway_dir.path().display().to_string();
    let mut gateway = start(
        &["gateway", "--supergraph", &file.display().to_string()],
        &[("GANTRY_DATA_DIR", data.as_str())],
    )
    .await;
    let token = users.register("filed").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let response: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", gateway.address))
        .bearer_auth(&token)
        .json(&json!({ "query": "{ me { username posts { edges { node { id } } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({ "data": { "me": { "username": "filed", "posts": { "edges": [] } } } })
    );
    assert!(
        !gateway_dir
            .path()
            .join(gantry_kit::keys::GENERATED_KEY_FILE)
            .exists(),
        "the gateway made up a key"
    );

    gateway.signal("TERM").await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), gateway.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "a stop on SIGTERM is a clean exit: {status}"
    );
    gateway.wait_for_log("stopped").await;
}

/// Without a `users` subgraph, `--jwks-url` or a key there is nothing to verify tokens
/// with: the gateway says so and does not start.
#[tokio::test]
async fn a_gateway_with_no_way_to_verify_tokens_refuses_to_start() {
    let address = serve_subgraph(
        Router::new()
            .route("/graphql", post(switchable_handler))
            .with_state(Switchable {
                mode: Arc::new(AtomicU8::new(0)),
                v1: Schema::build(V1, EmptyMutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
                v2: Schema::build(V2, EmptyMutation, EmptySubscription)
                    .enable_federation()
                    .finish(),
            }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let subgraph = format!("toy=http://{address}/graphql");

    let output = run(
        &["gateway", "--subgraph", &subgraph],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_LOG_FORMAT", "text"),
        ],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no way to verify access tokens") && stderr.contains("--jwks-url"),
        "{stderr}"
    );
    assert!(
        !dir.path()
            .join(gantry_kit::keys::GENERATED_KEY_FILE)
            .exists()
    );
}

/// The toy subgraph behind a counter of requests in progress, each held for 150 ms.
#[derive(Clone)]
struct Slow {
    schema: Schema<V1, EmptyMutation, EmptySubscription>,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

async fn slow_handler(State(s): State<Slow>, Json(body): Json<Value>) -> Json<Value> {
    let query = body["query"].as_str().unwrap_or_default().to_owned();
    let counted = !query.contains("_service");
    if counted {
        let now = s.now.fetch_add(1, Ordering::SeqCst) + 1;
        s.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let response = s.schema.execute(async_graphql::Request::new(query)).await;
    if counted {
        s.now.fetch_sub(1, Ordering::SeqCst);
    }
    Json(serde_json::to_value(response).unwrap())
}

/// Sends six different operations at once through a gateway started with `limit`, and
/// returns how many the subgraph saw at the same time.
async fn peak_behind_a_gateway_limited_to(limit: &str) -> usize {
    let slow = Slow {
        schema: Schema::build(V1, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
        now: Arc::new(AtomicUsize::new(0)),
        peak: Arc::new(AtomicUsize::new(0)),
    };
    let address = serve_subgraph(
        Router::new()
            .route("/graphql", post(slow_handler))
            .with_state(slow.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let subgraph = format!("slow=http://{address}/graphql");
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &subgraph,
            "--max-concurrent-operations",
            limit,
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/graphql", gateway.address);
    let asks = (0..6).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body: Value = client
                .post(url)
                .json(&json!({ "query": format!("{{ a{i}: hello }}") }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["data"][format!("a{i}")], "hello", "{body}");
        }
    });
    futures::future::join_all(asks).await;
    slow.peak.load(Ordering::SeqCst)
}

#[tokio::test]
async fn operations_past_the_concurrency_limit_wait_their_turn_and_are_all_answered() {
    let limited = peak_behind_a_gateway_limited_to("2").await;
    assert!(limited <= 2, "{limited} ran at once past a limit of 2");
    let unlimited = peak_behind_a_gateway_limited_to("0").await;
    assert!(
        unlimited > 2,
        "without a limit more run at once ({unlimited})"
    );
}
