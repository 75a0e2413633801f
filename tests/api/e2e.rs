//! One client's whole story — register, log in, follow, post, comment, like, read the feed,
//! edit, delete, refresh the session, delete the account — told to the real `gantry`
//! binary in three shapes: `gantry serve` on SQLite, `gantry serve` on PostgreSQL, and three
//! processes (`gantry subgraph users`, `gantry subgraph posts`, `gantry gateway
//! --subgraph …`) started at the same instant on a fresh PostgreSQL database. Every shape
//! must give the same responses.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Process, TestDatabase, free_port, fresh_database, start, start_listening,
};

/// The API endpoint of one shape, and the processes and database behind it.
struct Shape {
    endpoint: String,
    _processes: Vec<Process>,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl Shape {
    async fn serve(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(backend, dir.path()).await;
        let data_dir = dir.path().display().to_string();
        let env = [
            ("GANTRY_DATA_DIR", data_dir.as_str()),
            ("DATABASE_URL", url.as_str()),
        ];
        let serve = start(&["serve"], &env).await;
        Self {
            endpoint: format!("http://{}/graphql", serve.address),
            _processes: vec![serve],
            _data_dir: dir,
            _database: url,
        }
    }

    /// The three processes started at the same instant on a fresh database, as an
    /// operator's process manager starts them: both subgraphs migrate it at once, the posts
    /// subgraph waits for the signing key the users subgraph generates into their shared
    /// data dir, and the gateway waits for both to answer.
    async fn three_processes_at_once() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(Backend::Postgres, dir.path()).await;
        let data_dir = dir.path().display().to_string();
        let env = [
            ("GANTRY_DATA_DIR", data_dir.as_str()),
            ("DATABASE_URL", url.as_str()),
            ("GANTRY_OUTBOX_POLL_MS", "100"),
        ];
        let (users_port, posts_port) = (free_port(), free_port());
        let users_listen = format!("127.0.0.1:{users_port}");
        let posts_listen = format!("127.0.0.1:{posts_port}");
        let users_url = format!("users=http://{users_listen}/graphql");
        let posts_url = format!("posts=http://{posts_listen}/graphql");
        let gateway_dir = tempfile::tempdir().unwrap();
        let gateway_data = gateway_dir.path().display().to_string();
        let gateway_args = [
            "gateway",
            "--subgraph",
            &users_url,
            "--subgraph",
            &posts_url,
        ];
        let gateway_env = [("GANTRY_DATA_DIR", gateway_data.as_str())];
        let (gateway, users, posts) = tokio::join!(
            start(&gateway_args, &gateway_env),
            start_listening(&["subgraph", "users"], &env, &users_listen),
            start_listening(&["subgraph", "posts"], &env, &posts_listen),
        );
        Self {
            endpoint: format!("http://{}/graphql", gateway.address),
            _processes: vec![users, posts, gateway],
            _data_dir: dir,
            _database: url,
        }
    }
}

struct Client {
    http: reqwest::Client,
    endpoint: String,
    transcript: Vec<Value>,
}

impl Client {
    async fn send(&mut self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(&self.endpoint)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        self.transcript.push(response.clone());
        response
    }
}

/// Plays the scenario against `endpoint` and returns every response, in order.
async fn scenario(endpoint: String) -> Vec<Value> {
    let mut c = Client {
        http: reqwest::Client::new(),
        endpoint,
        transcript: Vec::new(),
    };
    let register = "mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken expiresIn user { id username email } } }";
    let alice = c.send(register, json!({ "i": { "username": "alice", "email": "alice@example.com", "password": "velvet comet harbor", "displayName": "Alice" } }), None).await;
    let bob = c.send(register, json!({ "i": { "username": "bob", "email": "bob@example.com", "password": "tangerine orbit ledger!", "displayName": "Bob" } }), None).await;
    let alice_id = alice["data"]["register"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let login = c.send("mutation { login(input: { login: \"alice@example.com\", password: \"velvet comet harbor\" }) { accessToken user { username } } }", json!({}), None).await;
    let alice_token = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_token = bob["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_refresh = bob["data"]["register"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();

    c.send(
        "mutation($u: ID!) { follow(userId: $u) { username followerCount viewerFollows } }",
        json!({ "u": alice_id }),
        Some(&bob_token),
    )
    .await;
    c.send(
        "mutation { createPost(input: { body: \"no token\" }) { id } }",
        json!({}),
        None,
    )
    .await;
    let post = c.send("mutation { createPost(input: { body: \"  Hello from Alice  \" }) { id body editedAt author { username displayName } } }", json!({}), Some(&alice_token)).await;
    let post_id = post["data"]["createPost"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send("mutation($p: ID!) { addComment(postId: $p, body: \"Welcome!\") { body author { username } post { body } } }", json!({ "p": post_id }), Some(&bob_token)).await;
    c.send(
        "mutation($p: ID!) { likePost(postId: $p) { likeCount viewerHasLiked } }",
        json!({ "p": post_id }),
        Some(&bob_token),
    )
    .await;
    let feed = "{ feed(first: 10) { edges { cursor node { id body author { username displayName followerCount }
        likeCount commentCount viewerHasLiked comments(first: 3) { edges { node { body author { username } } } } } } pageInfo { hasNextPage endCursor } } }";
    c.send(feed, json!({}), Some(&bob_token)).await;
    c.send(
        "mutation($p: ID!) { editPost(id: $p, body: \"Bob, edit this\") { id } }",
        json!({ "p": post_id }),
        Some(&bob_token),
    )
    .await;
    c.send(
        "mutation($p: ID!) { editPost(id: $p, body: \"Hello again\") { body } }",
        json!({ "p": post_id }),
        Some(&alice_token),
    )
    .await;
    c.send("query Latest($n: Int = 5) { latestPosts(first: $n) { edges { node { ... on Post { b: body author { username } } } } } }", json!({}), None).await;
    c.send(
        "mutation($p: ID!) { deletePost(id: $p) }",
        json!({ "p": post_id }),
        Some(&alice_token),
    )
    .await;
    c.send(
        "{ latestPosts { edges { node { body } } pageInfo { hasNextPage endCursor } } }",
        json!({}),
        None,
    )
    .await;
    let refreshed = c.send("mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken user { username } } }", json!({ "t": bob_refresh }), None).await;
    c.send(
        "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
        json!({ "t": bob_refresh }),
        None,
    )
    .await;
    // The replay ended bob's session, the refreshed token with it: he signs in again.
    assert!(refreshed["data"]["refreshSession"]["accessToken"].is_string());
    let login = c.send("mutation { login(input: { login: \"bob\", password: \"tangerine orbit ledger!\" }) { accessToken user { username } } }", json!({}), None).await;
    let bob_token = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(
        "mutation { deleteAccount(password: \"tangerine orbit ledger!\") }",
        json!({}),
        Some(&bob_token),
    )
    .await;

    // Account deletion reaches the posts side through the outbox; wait for it.
    let mut followers = Value::Null;
    for _ in 0..100 {
        let me = c
            .send(
                "{ me { username followerCount } }",
                json!({}),
                Some(&alice_token),
            )
            .await;
        c.transcript.pop();
        followers = me["data"]["me"]["followerCount"].clone();
        if followers == 0 {
            c.transcript.push(me);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(followers, 0, "bob's follow outlived his account");
    c.send(
        "{ userByUsername(username: \"bob\") { id } }",
        json!({}),
        None,
    )
    .await;
    c.transcript
}

/// Replaces what differs between runs (ids, tokens, times, cursors) by stable placeholders
/// numbered in order of appearance.
fn normalize(value: &Value, seen: &mut HashMap<String, String>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "accessToken" | "refreshToken" if v.is_string() => json!("<token>"),
                        "createdAt" | "editedAt" if v.is_string() => json!("<time>"),
                        _ => normalize(v, seen),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalize(v, seen)).collect()),
        Value::String(s) if uuid::Uuid::parse_str(s).is_ok() || s.starts_with("Z2Mx") => {
            let next = format!("<opaque-{}>", seen.len());
            json!(seen.entry(s.clone()).or_insert(next).clone())
        }
        other => other.clone(),
    }
}

fn normalized(transcript: &[Value]) -> Vec<Value> {
    let mut seen = HashMap::new();
    transcript.iter().map(|v| normalize(v, &mut seen)).collect()
}

#[tokio::test]
async fn one_client_scenario_gives_the_same_responses_in_every_shape() {
    let sqlite = Shape::serve(Backend::Sqlite).await;
    let on_sqlite = normalized(&scenario(sqlite.endpoint.clone()).await);
    drop(sqlite);
    let postgres = Shape::serve(Backend::Postgres).await;
    let on_postgres = normalized(&scenario(postgres.endpoint.clone()).await);
    drop(postgres);
    let split = Shape::three_processes_at_once().await;
    let on_three = normalized(&scenario(split.endpoint.clone()).await);

    // What a client sees, spelled out for the one shape; the others must match it.
    assert_eq!(
        on_sqlite[3],
        json!({ "data": { "follow": { "username": "alice", "followerCount": 1, "viewerFollows": true } } })
    );
    // `createPost` is `@authenticated`: the gateway refuses it before any subgraph runs it.
    assert_eq!(
        on_sqlite[4]["errors"][0]["extensions"]["code"],
        "UNAUTHORIZED_FIELD_OR_TYPE"
    );
    assert_eq!(
        on_sqlite[5]["data"]["createPost"]["body"],
        "Hello from Alice"
    );
    assert_eq!(
        on_sqlite[8]["data"]["feed"]["edges"][0]["node"],
        json!({ "id": on_sqlite[5]["data"]["createPost"]["id"], "body": "Hello from Alice",
                "author": { "username": "alice", "displayName": "Alice", "followerCount": 1 },
                "likeCount": 1, "commentCount": 1, "viewerHasLiked": true,
                "comments": { "edges": [{ "node": { "body": "Welcome!", "author": { "username": "bob" } } }] } })
    );
    assert_eq!(on_sqlite[9]["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(
        on_sqlite[11],
        json!({ "data": { "latestPosts": { "edges": [{ "node": { "b": "Hello again", "author": { "username": "alice" } } }] } } })
    );
    assert_eq!(on_sqlite[12], json!({ "data": { "deletePost": true } }));
    assert_eq!(
        on_sqlite[13],
        json!({ "data": { "latestPosts": { "edges": [], "pageInfo": { "hasNextPage": false, "endCursor": null } } } })
    );
    assert_eq!(
        on_sqlite[15]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "a rotated refresh token is refused"
    );
    assert_eq!(
        on_sqlite[16]["data"]["login"]["user"]["username"], "bob",
        "signed in again after the replay ended the session"
    );
    assert_eq!(on_sqlite[17], json!({ "data": { "deleteAccount": true } }));
    assert_eq!(
        on_sqlite[18],
        json!({ "data": { "me": { "username": "alice", "followerCount": 0 } } })
    );
    assert_eq!(on_sqlite[19], json!({ "data": { "userByUsername": null } }));

    assert_eq!(
        on_sqlite, on_postgres,
        "serve on SQLite and on PostgreSQL differ"
    );
    assert_eq!(on_sqlite, on_three, "serve and three processes differ");
}
