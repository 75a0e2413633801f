//! Separate processes as operators run them: `gantry subgraph users`, `gantry subgraph
//! posts` and two `gantry gateway` replicas sharing one Redis, talking real HTTP. What one
//! replica registers, changes or has stored, the other serves; an account deletion applied by
//! the posts subgraph's outbox consumer clears what either replica cached about it. And a
//! manifest rewritten in place is picked up on SIGHUP.

use std::time::Duration;

use gantry_gateway::persisted::sha256_hex;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::helpers::{Backend, Process, REGISTER, fresh_database, start};

struct Replica {
    _process: Process,
    url: String,
    metrics: String,
    client: reqwest::Client,
}

impl Replica {
    fn new(process: Process) -> Self {
        Self {
            url: format!("http://{}/graphql", process.address),
            metrics: format!("http://{}/metrics", process.address),
            _process: process,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: Value, token: Option<&str>) -> (HeaderMap, Value) {
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers().clone();
        (headers, response.json().await.unwrap())
    }

    async fn query(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> (HeaderMap, Value) {
        self.post(json!({ "query": query, "variables": variables }), token)
            .await
    }

    async fn get(&self, params: &[(&str, String)]) -> (u16, Value) {
        let response = self
            .client
            .get(&self.url)
            .query(params)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Responses this replica has written to the shared cache so far, from `/metrics`.
    async fn stored(&self) -> u64 {
        let text = self.client.get(&self.metrics).send().await.unwrap();
        let text = text.text().await.unwrap();
        text.lines()
            .find(|line| line.starts_with("gantry_cache_stores_total{cache=\"response\"}"))
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |value| value.parse().unwrap())
    }

    /// Queries, and once it has answered, waits (at most 5 s) until the response it cached
    /// is in Redis: a replica writes the cache after it answers, so another replica sees
    /// the entry a moment later.
    async fn query_and_store(&self, query: &str, variables: Value) -> (HeaderMap, Value) {
        let before = self.stored().await;
        let answer = self.query(query, variables, None).await;
        for _ in 0..100 {
            if self.stored().await > before {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the response was not stored in 5 s: {}", answer.1);
    }

    /// Registers `name`; its id and access token.
    async fn register(&self, name: &str) -> (String, String) {
        let (_, body) = self
            .query(
                REGISTER,
                json!({ "input": {
                    "username": name,
                    "email": format!("{name}@example.com"),
                    "password": "correct horse battery",
                    "displayName": name,
                }}),
                None,
            )
            .await;
        let payload = &body["data"]["register"];
        assert_eq!(body["errors"], Value::Null, "register {name}: {body}");
        (
            payload["user"]["id"].as_str().unwrap().to_owned(),
            payload["accessToken"].as_str().unwrap().to_owned(),
        )
    }
}

fn x_cache(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-cache").and_then(|v| v.to_str().ok())
}

const POST: &str = "query($id: ID!) { post(id: $id) { id body author { username } } }";
const PROFILE: &str = "query($id: ID!) { user(id: $id) { id username followerCount } }";

#[tokio::test]
async fn two_gateway_processes_share_persisted_queries_and_cached_responses_through_redis() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let data = data_dir.path().display().to_string();
    let redis =
        std::env::var("GANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test-{}:", uuid::Uuid::now_v7().simple());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("GANTRY_REDIS_PREFIX", prefix.as_str()),
        ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
        ("GANTRY_OUTBOX_POLL_MS", "100"),
    ];
    let users = start(&["subgraph", "users"], &env).await;
    let posts = start(&["subgraph", "posts"], &env).await;
    let users_url = format!("users=http://{}/graphql", users.address);
    let posts_url = format!("posts=http://{}/graphql", posts.address);
    let gateway = [
        "gateway",
        "--subgraph",
        &users_url,
        "--subgraph",
        &posts_url,
    ];
    let a = Replica::new(start(&gateway, &env).await);
    let b = Replica::new(start(&gateway, &env).await);

    // A post's page, cached by one replica, changes on both right after `editPost`.
    let (alice, alice_token) = a.register("alice").await;
    let (_, created) = a
        .query(
            "mutation { createPost(input: { body: \"first draft\" }) { id } }",
            json!({}),
            Some(&alice_token),
        )
        .await;
    let post_id = created["data"]["createPost"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (miss, _) = a.query_and_store(POST, json!({ "id": post_id })).await;
    let (hit, cached) = b.query(POST, json!({ "id": post_id }), None).await;
    assert_eq!(x_cache(&miss), Some("MISS"));
    assert_eq!(x_cache(&hit), Some("HIT"), "b serves what a cached");
    assert_eq!(cached["data"]["post"]["body"], "first draft");
    let (_, edited) = b
        .query(
            "mutation($id: ID!) { editPost(id: $id, body: \"second draft\") { id } }",
            json!({ "id": post_id }),
            Some(&alice_token),
        )
        .await;
    assert_eq!(edited["errors"], Value::Null, "{edited}");
    let (after, fresh) = a.query(POST, json!({ "id": post_id }), None).await;
    assert_eq!(x_cache(&after), Some("MISS"));
    assert_eq!(fresh["data"]["post"]["body"], "second draft");

    // An APQ registration on one replica serves a hash-only GET on the other.
    let text = "query Latest { latestPosts(first: 1) { edges { node { body } } } }";
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(text) } });
    let (_, registered) = a
        .post(json!({ "query": text, "extensions": extensions }), None)
        .await;
    assert_eq!(registered["errors"], Value::Null, "{registered}");
    let (status, by_hash) = b
        .get(&[
            ("operationName", "Latest".into()),
            ("extensions", extensions.to_string()),
        ])
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_hash, registered);

    // An account deletion reaches the gateways through the outbox, not a mutation they
    // saw: the posts subgraph clears the cached follower count of every replica.
    let (_, bob_token) = b.register("bob").await;
    let (_, followed) = b
        .query(
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            json!({ "id": alice }),
            Some(&bob_token),
        )
        .await;
    assert_eq!(followed["errors"], Value::Null, "{followed}");
    let (_, before) = a.query_and_store(PROFILE, json!({ "id": alice })).await;
    let (hit, _) = b.query(PROFILE, json!({ "id": alice }), None).await;
    assert_eq!(before["data"]["user"]["followerCount"], 1);
    assert_eq!(x_cache(&hit), Some("HIT"));
    let (_, deleted) = a
        .query(
            "mutation { deleteAccount(password: \"correct horse battery\") }",
            json!({}),
            Some(&bob_token),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");
    // The consumer polls every 100 ms; the cached entry would live 30 s.
    let mut count = Value::Null;
    for _ in 0..50 {
        let (_, now) = b.query(PROFILE, json!({ "id": alice }), None).await;
        count = now["data"]["user"]["followerCount"].clone();
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 0, "the cached follower count was dropped");
}

fn manifest(operations: &[(&str, &str)], length: usize) -> String {
    let operations: Vec<Value> = operations
        .iter()
        .map(|(name, body)| json!({ "id": sha256_hex(body), "body": body, "name": name, "type": "query" }))
        .collect();
    let text = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": operations,
    })
    .to_string();
    format!("{text:length$}")
}

#[tokio::test]
async fn sighup_reloads_a_manifest_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    let first = "query First { latestPosts(first: 1) { edges { node { id } } } }";
    let second = "query Second { latestPosts(first: 2) { edges { node { id } } } }";
    std::fs::write(&path, manifest(&[("First", first)], 1000)).unwrap();
    let data = dir.path().display().to_string();
    let manifest_path = path.display().to_string();
    let server = start(
        &["serve", "--manifest", &manifest_path, "--safelist"],
        &[("GANTRY_DATA_DIR", data.as_str())],
    )
    .await;
    let url = format!("http://{}/graphql", server.address);
    let client = reqwest::Client::new();
    let by_id = async |body: &str| {
        let response = client
            .post(&url)
            .json(&json!({ "documentId": sha256_hex(body) }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    assert_eq!(by_id(first).await.0, 200);
    let (status, refused) = by_id(second).await;
    assert_eq!(status, 404);
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_IN_LIST"
    );

    // Same length, same modification time: only the signal can tell it changed.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(
        &path,
        manifest(&[("First", first), ("Second", second)], 1000),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    server.signal("HUP").await;
    server.wait_for_log("\"reason\":\"SIGHUP\"").await;

    let (status, answered) = by_id(second).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["errors"], Value::Null);
}
