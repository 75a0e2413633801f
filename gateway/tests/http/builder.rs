//! The gateway built from operator code with [`GatewayApp::builder`], in front of a
//! subgraph this test serves over HTTP: composed at start, answering over real sockets,
//! with the operator's own route, `/ready` and `/health`, and a clean stop.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_gateway::app::{
    BuildError, GatewayApp, GatewaySettings, SubgraphUrl, SupergraphSource, TokenKeys,
};
use gantry_identity::keys::{KeySettings, SigningKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Query;

#[Object]
impl Query {
    async fn greeting(&self, name: String) -> String {
        format!("Hello, {name}")
    }
}

/// A federation subgraph on port 0: `POST /graphql` and `GET /health`. Its URL.
async fn serve_subgraph() -> String {
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let router = Router::new()
        .route(
            "/graphql",
            post(move |Json(request): Json<async_graphql::Request>| {
                let schema = schema.clone();
                async move { Json(schema.execute(request).await) }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

fn signing_key() -> (tempfile::TempDir, SigningKey) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::load(&KeySettings {
        data_dir: dir.path().to_path_buf(),
        ..KeySettings::default()
    })
    .expect("a generated key");
    (dir, key)
}

#[tokio::test]
async fn a_gateway_built_by_operator_code_answers_queries_over_http() {
    let subgraph = serve_subgraph().await;
    let (_dir, key) = signing_key();
    let gateway = GatewayApp::builder(GatewaySettings::default())
        .supergraph(SupergraphSource::Subgraphs(vec![SubgraphUrl::new(
            "greetings",
            subgraph,
        )]))
        .token_keys(TokenKeys::Keys(vec![key.public.clone()]))
        .routes(Router::new().route("/version", get(|| async { "operator-1" })))
        .build()
        .await
        .expect("the gateway builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let answer: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "{ greeting(name: \"Ada\") }" }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(answer, json!({ "data": { "greeting": "Hello, Ada" } }));

    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("/ready answers");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("a JSON body");
    assert_eq!(ready["checks"]["supergraph"]["status"], "ok");
    assert_eq!(ready["checks"]["subgraph:greetings"]["status"], "ok");
    let health = client.get(format!("{base}/health")).send().await;
    assert_eq!(health.expect("/health answers").status(), 200);
    let version = client.get(format!("{base}/version")).send().await;
    let version = version.expect("the operator's route answers");
    assert!(
        version.headers().contains_key("x-request-id"),
        "the operator's routes get the common layers"
    );
    assert_eq!(version.text().await.expect("a body"), "operator-1");

    stop.send(()).expect("the server is running");
    server
        .await
        .expect("the server task")
        .expect("the server stops cleanly");
}

#[tokio::test]
async fn a_gateway_with_no_way_to_verify_tokens_refuses_to_build() {
    let subgraph = serve_subgraph().await;
    let built = GatewayApp::builder(GatewaySettings::default())
        .supergraph(SupergraphSource::Subgraphs(vec![SubgraphUrl::new(
            "greetings",
            subgraph,
        )]))
        .build()
        .await;
    let err = built.expect_err("no users subgraph and no keys");
    assert!(matches!(err, BuildError::NoTokenKeys), "{err}");
    assert!(err.to_string().contains("--jwks-url"), "{err}");
}
