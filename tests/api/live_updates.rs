//! Live updates as a frontend sees them: real clients in Node (`graphql-ws`, `graphql-sse`
//! and Apollo Client's multipart subscriptions, through `tests/node/live.mjs`) against the
//! real `gantry` binary, in `gantry serve` and in the three-process shape with two gateway
//! replicas; tokens refused and expiring; and a supergraph recomposed while clients are
//! subscribed. Each test waits for what `/metrics` says is held before it writes, so the
//! events it expects are surely listened for.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::helpers::{
    Backend, Process, REGISTER, TestDatabase, eventually, fresh_database, start, start_listening,
};

/// How long a client may take to deliver what a test waits for, on a loaded machine.
const CLIENT_WAIT: Duration = Duration::from_secs(30);

/// One subscription held by a real client (`node tests/node/live.mjs`), killed (so
/// disconnected) when dropped.
struct LiveClient {
    lines: Lines<BufReader<ChildStdout>>,
    what: String,
    _node: Child,
}

impl LiveClient {
    /// Subscribes with `transport` (`ws`, `sse` or `multipart`) at `url`, as `token`.
    async fn subscribe(
        transport: &str,
        url: &str,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        assert!(
            dir.join("node_modules").exists(),
            "tests/node/node_modules is missing: run `npm ci` there (scripts/test does)"
        );
        let variables = variables.to_string();
        let mut command = Command::new("node");
        command
            .args(["live.mjs", transport, url, "--query", query])
            .args(["--variables", &variables])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let mut node = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run node: {error}"));
        let stdout = node.stdout.take().unwrap();
        let mut client = Self {
            lines: BufReader::new(stdout).lines(),
            what: format!("the {transport} client of `{query}`"),
            _node: node,
        };
        assert_eq!(client.message().await, json!({ "subscribing": true }));
        client
    }

    /// The next thing the client delivered: `{"next": RESULT}`, `{"error": …}` or
    /// `{"complete": true}`.
    async fn message(&mut self) -> Value {
        let line = tokio::time::timeout(CLIENT_WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: nothing within {CLIENT_WAIT:?}", self.what))
            .unwrap();
        let line = line.unwrap_or_else(|| panic!("{} exited without a word", self.what));
        serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("{} printed something else: {line}", self.what))
    }
}

/// POSTs an operation to `http://ADDRESS/graphql`.
async fn graphql(address: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// [`graphql`], which must succeed; its `data`.
async fn write(address: &str, query: &str, variables: Value, token: &str) -> Value {
    let body = graphql(address, query, variables, Some(token)).await;
    assert_eq!(body["errors"], Value::Null, "{query}: {body}");
    body["data"].clone()
}

/// Registers `name` through `address`: `(id, access token)`.
async fn register(address: &str, name: &str) -> (String, String) {
    let body = graphql(
        address,
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
    assert_eq!(body["errors"], Value::Null, "register {name}: {body}");
    let payload = &body["data"]["register"];
    (
        payload["user"]["id"].as_str().unwrap().to_owned(),
        payload["accessToken"].as_str().unwrap().to_owned(),
    )
}

/// `token` follows `user`, once the posts subgraph has learnt of that account.
async fn follow(address: &str, token: &str, user: &str) {
    eventually("the follow succeeds", CLIENT_WAIT, || async {
        let body = graphql(address, FOLLOW, json!({ "u": user }), Some(token)).await;
        (body["errors"] == Value::Null).then_some(())
    })
    .await;
}

async fn create_post(address: &str, token: &str, body: &str) -> String {
    let data = write(address, CREATE_POST, json!({ "b": body }), token).await;
    data["createPost"]["id"].as_str().unwrap().to_owned()
}

const FOLLOW: &str = "mutation($u: ID!) { follow(userId: $u) { id } }";
const CREATE_POST: &str = "mutation($b: String!) { createPost(input: { body: $b }) { id } }";
const ADD_COMMENT: &str =
    "mutation($p: ID!, $b: String!) { addComment(postId: $p, body: $b) { id } }";
const LIKE: &str = "mutation($p: ID!) { likePost(postId: $p) { id } }";
/// `body` from the posts subgraph, `username` from users, `followerCount` from posts again.
const COMMENTS: &str =
    "subscription($p: ID!) { commentAdded(postId: $p) { body author { username followerCount } } }";
const LIKES: &str = "subscription($p: ID!) { postLikeCountChanged(postId: $p) { id likeCount } }";
const FEED: &str = "subscription { postCreated { body author { username } } }";

/// The value of one series (`name` or `name{labels}`) in the Prometheus text at
/// `http://ADDRESS/metrics`; 0 when it is not there.
async fn metric(address: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Client subscriptions a gateway holds.
const CLIENTS: &str = "gantry_subscriptions_active";
/// Subscriptions a gateway holds open to subgraphs.
const UPSTREAMS: &str = "gantry_subscription_upstreams_active";
/// Subscriptions the posts subgraph holds (each listens for events once counted).
const POSTS_HELD: &str = "gantry_subscriptions_active{subgraph=\"posts\"}";

/// Waits until each `(address, series)` shows its value.
async fn until_metrics(expected: &[(&str, &str, f64)]) {
    let what = format!("metrics at {expected:?}");
    eventually(&what, CLIENT_WAIT, || async {
        for (address, series, value) in expected {
            if metric(address, series).await != *value {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// `gantry serve` on a fresh SQLite database in its own data dir, with `env` on top.
async fn serve(env: &[(&str, &str)]) -> (tempfile::TempDir, Process) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut all = vec![("GANTRY_DATA_DIR", data.as_str())];
    all.extend_from_slice(env);
    let serve = start(&["serve"], &all).await;
    (dir, serve)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_comments_over_graphql_ws_and_likes_over_graphql_sse_with_fields_of_both_subgraphs()
 {
    let (_dir, serve) = serve(&[]).await;
    let address = serve.address.as_str();
    let url = format!("http://{address}/graphql");
    let (alice, alice_token) = register(address, "alice").await;
    let (bob, bob_token) = register(address, "bob").await;
    follow(address, &alice_token, &bob).await;
    follow(address, &bob_token, &alice).await;
    let post = create_post(address, &alice_token, "a post to talk about").await;

    let mut comments =
        LiveClient::subscribe("ws", &url, COMMENTS, json!({ "p": post }), None).await;
    let mut likes = LiveClient::subscribe("sse", &url, LIKES, json!({ "p": post }), None).await;
    until_metrics(&[(address, CLIENTS, 2.0), (address, POSTS_HELD, 2.0)]).await;
    write(
        address,
        ADD_COMMENT,
        json!({ "p": post, "b": "nice post" }),
        &bob_token,
    )
    .await;
    let commented = comments.message().await;
    write(address, LIKE, json!({ "p": post }), &bob_token).await;
    let liked = likes.message().await;

    assert_eq!(
        commented,
        json!({ "next": { "data": { "commentAdded": {
            "body": "nice post",
            "author": { "username": "bob", "followerCount": 1 },
        } } } })
    );
    assert_eq!(
        liked,
        json!({ "next": { "data": { "postLikeCountChanged": { "id": post, "likeCount": 1 } } } })
    );
    drop((comments, likes));
    until_metrics(&[(address, CLIENTS, 0.0), (address, POSTS_HELD, 0.0)]).await;
}

/// `postCreated` is `@authenticated`: without a token the gateway removes it, as it
/// removes such a field from a query, and nothing is left to subscribe to. No heartbeat
/// comes in the test's time: each event must reach the client in its own part, not when
/// the next part pushes it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_client_gets_followed_authors_posts_over_multipart_and_an_authorization_error_without_a_token()
 {
    let (_dir, serve) = serve(&[("GANTRY_SUBSCRIPTION_HEARTBEAT_SECS", "600")]).await;
    let address = serve.address.as_str();
    let url = format!("http://{address}/graphql");
    let (alice, alice_token) = register(address, "alice").await;
    let (_, bob_token) = register(address, "bob").await;
    let (_, carol_token) = register(address, "carol").await;
    follow(address, &bob_token, &alice).await;

    let mut anonymous = LiveClient::subscribe("multipart", &url, FEED, json!({}), None).await;
    let refused = anonymous.message().await;
    let mut anonymous_ws = LiveClient::subscribe("ws", &url, FEED, json!({}), None).await;
    let refused_ws = anonymous_ws.message().await;
    let mut bobs =
        LiveClient::subscribe("multipart", &url, FEED, json!({}), Some(&bob_token)).await;
    until_metrics(&[(address, CLIENTS, 1.0), (address, POSTS_HELD, 1.0)]).await;
    create_post(address, &carol_token, "carol, whom bob does not follow").await;
    create_post(address, &alice_token, "alice, whom bob follows").await;
    let got = bobs.message().await;

    let unauthorized = json!([{
        "message": "Unauthorized field or type: Subscription.postCreated",
        "path": ["postCreated"],
        "extensions": { "code": "UNAUTHORIZED_FIELD_OR_TYPE" },
    }]);
    assert_eq!(refused["error"]["graphQLErrors"], unauthorized, "{refused}");
    assert_eq!(refused_ws, json!({ "error": { "errors": unauthorized } }));
    assert_eq!(
        got,
        json!({ "next": { "data": { "postCreated": {
            "body": "alice, whom bob follows",
            "author": { "username": "alice" },
        } } } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_does_not_verify_is_refused_by_every_transport() {
    let (_dir, serve) = serve(&[]).await;
    let address = serve.address.as_str();
    let url = format!("http://{address}/graphql");
    let (_, token) = register(address, "alice").await;
    let post = create_post(address, &token, "a post").await;
    let variables = json!({ "p": post });
    let forged = Some("not-a-token");

    let mut ws = LiveClient::subscribe("ws", &url, COMMENTS, variables.clone(), forged).await;
    let mut sse = LiveClient::subscribe("sse", &url, COMMENTS, variables.clone(), forged).await;
    let mut multipart = LiveClient::subscribe("multipart", &url, COMMENTS, variables, forged).await;
    let (ws_end, sse_first, sse_end, multipart_end) = (
        ws.message().await,
        sse.message().await,
        sse.message().await,
        multipart.message().await,
    );

    assert_eq!(ws_end["error"]["closeCode"], 4403, "{ws_end}");
    assert_eq!(
        sse_first["next"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{sse_first}"
    );
    assert_eq!(sse_end, json!({ "complete": true }));
    assert_eq!(
        multipart_end["error"]["graphQLErrors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{multipart_end}"
    );
    assert_eq!(metric(address, CLIENTS).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_that_expires_mid_subscription_ends_it_with_unauthenticated() {
    // Tokens live 10 s, and verify 5 s past that: time enough to subscribe on a busy machine.
    let (_dir, serve) = serve(&[("GANTRY_ACCESS_TOKEN_TTL_SECS", "10")]).await;
    let address = serve.address.as_str();
    let url = format!("http://{address}/graphql");
    let (_, token) = register(address, "alice").await;
    let post = create_post(address, &token, "a post").await;
    let query = "subscription($p: ID!) { commentAdded(postId: $p) { body } }";
    let variables = json!({ "p": post });

    let mut clients = Vec::new();
    for transport in ["ws", "sse", "multipart"] {
        clients.push(
            LiveClient::subscribe(transport, &url, query, variables.clone(), Some(&token)).await,
        );
    }
    // One upstream subscription: the three are the same operation for the same user.
    until_metrics(&[
        (address, CLIENTS, 3.0),
        (address, UPSTREAMS, 1.0),
        (address, POSTS_HELD, 1.0),
    ])
    .await;
    write(
        address,
        ADD_COMMENT,
        json!({ "p": post, "b": "while the token is good" }),
        &token,
    )
    .await;
    // graphql-ws and graphql-sse: the event, the error, then `complete`; Apollo Client
    // ends the subscription at the error.
    let mut heard = Vec::new();
    for (client, messages) in clients.iter_mut().zip([3, 3, 2]) {
        let mut said = Vec::new();
        for _ in 0..messages {
            said.push(client.message().await);
        }
        heard.push(said);
    }

    let event =
        json!({ "next": { "data": { "commentAdded": { "body": "while the token is good" } } } });
    for (transport, said) in ["ws", "sse", "multipart"].into_iter().zip(&heard) {
        assert_eq!(said[0], event, "{transport}");
        let code = match transport {
            "multipart" => &said[1]["error"]["graphQLErrors"][0]["extensions"]["code"],
            _ => &said[1]["next"]["errors"][0]["extensions"]["code"],
        };
        assert_eq!(code, "UNAUTHENTICATED", "{transport}: {}", said[1]);
    }
    assert_eq!(heard[0][2], json!({ "complete": true }));
    assert_eq!(heard[1][2], json!({ "complete": true }));
    until_metrics(&[
        (address, CLIENTS, 0.0),
        (address, UPSTREAMS, 0.0),
        (address, POSTS_HELD, 0.0),
    ])
    .await;
}

/// The three-process shape on one fresh PostgreSQL database: the users subgraph and
/// replicas of the posts subgraph as processes of the real binary (sharing live events
/// through Redis pub/sub when asked), and gateways in front of them.
struct Deployment {
    /// What every subgraph process starts with.
    env: Vec<(String, String)>,
    users: Process,
    posts: Vec<Process>,
    gateways: Vec<Process>,
    _dirs: Vec<tempfile::TempDir>,
    _database: TestDatabase,
}

impl Deployment {
    async fn start(posts_replicas: usize, redis: bool) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let database = fresh_database(Backend::Postgres, data_dir.path()).await;
        let mut env = vec![
            ("GANTRY_DATA_DIR", data_dir.path().display().to_string()),
            ("DATABASE_URL", database.to_string()),
            ("GANTRY_OUTBOX_POLL_MS", "100".to_owned()),
        ];
        if redis {
            let url = std::env::var("GANTRY_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!("test-{}:", uuid::Uuid::now_v7().simple());
            env.extend([
                ("REDIS_URL", url),
                ("GANTRY_REDIS_PREFIX", prefix),
                ("GANTRY_REDIS_TIMEOUT_MS", "1000".to_owned()),
            ]);
        }
        let env: Vec<_> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let users = start(&["subgraph", "users"], &pairs(&env)).await;
        let mut posts = Vec::new();
        for _ in 0..posts_replicas {
            posts.push(start(&["subgraph", "posts"], &pairs(&env)).await);
        }
        if redis {
            for process in posts.iter().chain([&users]) {
                process.wait_for_log("listening for live events").await;
            }
        }
        Self {
            env,
            users,
            posts,
            gateways: Vec::new(),
            _dirs: vec![data_dir],
            _database: database,
        }
    }

    /// A gateway (in a data dir of its own) over the users subgraph, posts replica
    /// `posts`, and `more` subgraphs (`NAME=URL`); its address.
    async fn gateway(&mut self, posts: usize, more: &[&str], args: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let users = format!("users=http://{}/graphql", self.users.address);
        let posts = format!("posts=http://{}/graphql", self.posts[posts].address);
        let mut all = vec!["gateway", "--subgraph", &users, "--subgraph", &posts];
        for subgraph in more {
            all.extend(["--subgraph", subgraph]);
        }
        all.extend_from_slice(args);
        let gateway = start(&all, &[("GANTRY_DATA_DIR", data.as_str())]).await;
        let address = gateway.address.clone();
        self.gateways.push(gateway);
        self._dirs.push(dir);
        address
    }

    /// Stops the users subgraph and starts it again on the same address.
    async fn restart_users(&mut self) {
        let address = self.users.address.clone();
        self.users.child.kill().await.unwrap();
        self.users = start_listening(&["subgraph", "users"], &pairs(&self.env), &address).await;
    }

    /// Stops posts replica `replica` as a deploy does (SIGTERM, then waits for it to
    /// exit) and starts it again on the same address.
    async fn restart_posts(&mut self, replica: usize) {
        let address = self.posts[replica].address.clone();
        self.posts[replica].signal("TERM").await;
        tokio::time::timeout(CLIENT_WAIT, self.posts[replica].child.wait())
            .await
            .expect("the posts subgraph stops on SIGTERM")
            .unwrap();
        self.posts[replica] =
            start_listening(&["subgraph", "posts"], &pairs(&self.env), &address).await;
    }
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_gateway_replica_hears_of_a_write_sent_through_the_other() {
    let mut deployment = Deployment::start(2, true).await;
    let a = deployment.gateway(0, &[], &[]).await;
    let b = deployment.gateway(1, &[], &[]).await;
    let (alice, alice_token) = register(&b, "alice").await;
    let (bob, bob_token) = register(&b, "bob").await;
    follow(&b, &bob_token, &alice).await;
    follow(&b, &alice_token, &bob).await;
    let post = create_post(&b, &alice_token, "a post on replica b").await;
    let url_a = format!("http://{a}/graphql");
    let posts_a = deployment.posts[0].address.clone();

    let mut comments =
        LiveClient::subscribe("ws", &url_a, COMMENTS, json!({ "p": post }), None).await;
    let mut feed = LiveClient::subscribe("sse", &url_a, FEED, json!({}), Some(&bob_token)).await;
    until_metrics(&[
        (&a, CLIENTS, 2.0),
        (&a, UPSTREAMS, 2.0),
        (&posts_a, POSTS_HELD, 2.0),
    ])
    .await;
    write(
        &b,
        ADD_COMMENT,
        json!({ "p": post, "b": "sent through b" }),
        &bob_token,
    )
    .await;
    let commented = comments.message().await;
    create_post(&b, &alice_token, "also through b").await;
    let posted = feed.message().await;

    assert_eq!(
        commented,
        json!({ "next": { "data": { "commentAdded": {
            "body": "sent through b",
            "author": { "username": "bob", "followerCount": 1 },
        } } } })
    );
    assert_eq!(
        posted,
        json!({ "next": { "data": { "postCreated": {
            "body": "also through b",
            "author": { "username": "alice" },
        } } } })
    );
    assert_eq!(
        metric(&b, CLIENTS).await,
        0.0,
        "nothing subscribed through b"
    );
}

/// Waits until `gateway` holds one client subscription on one upstream, held by the
/// posts subgraph at `posts`.
async fn held_once(gateway: &str, posts: &str) {
    until_metrics(&[
        (gateway, CLIENTS, 1.0),
        (gateway, UPSTREAMS, 1.0),
        (posts, POSTS_HELD, 1.0),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_outlives_a_restart_of_the_subgraph_that_owns_it() {
    let mut deployment = Deployment::start(1, false).await;
    let gateway = deployment.gateway(0, &[], &[]).await;
    let url = format!("http://{gateway}/graphql");
    let (_, alice_token) = register(&gateway, "alice").await;
    let (_, bob_token) = register(&gateway, "bob").await;
    let post = create_post(&gateway, &alice_token, "a post").await;
    let mut client = LiveClient::subscribe("ws", &url, COMMENTS, json!({ "p": post }), None).await;
    held_once(&gateway, &deployment.posts[0].address).await;
    let comment = json!({ "p": post, "b": "before the restart" });
    write(&gateway, ADD_COMMENT, comment, &bob_token).await;
    let before = client.message().await;
    // The posts subgraph is deployed again: stopped, and back on its address.
    deployment.restart_posts(0).await;
    held_once(&gateway, &deployment.posts[0].address).await;
    let comment = json!({ "p": post, "b": "after the restart" });
    write(&gateway, ADD_COMMENT, comment, &bob_token).await;
    let after = client.message().await;

    for (got, body) in [(before, "before the restart"), (after, "after the restart")] {
        assert_eq!(
            got,
            json!({ "next": { "data": { "commentAdded": {
                "body": body,
                "author": { "username": "bob", "followerCount": 0 },
            } } } })
        );
    }
}

/// `User.badge`, from a subgraph that later drops it.
#[derive(SimpleObject)]
#[graphql(name = "User")]
struct Badged {
    id: ID,
    badge: String,
}

struct BadgesQuery;

#[Object(name = "Query")]
impl BadgesQuery {
    async fn badge_count(&self) -> i32 {
        1
    }
    #[graphql(entity)]
    async fn user_by_id(&self, id: ID) -> Badged {
        Badged {
            badge: format!("badge of {}", id.as_str()),
            id,
        }
    }
}

/// The same subgraph once badges are retired: no `User` any more.
struct RetiredQuery;

#[Object(name = "Query")]
impl RetiredQuery {
    async fn badge_count(&self) -> i32 {
        0
    }
}

/// A subgraph whose schema changes when `version` goes from 1 to 2, as after a deploy.
#[derive(Clone)]
struct Badges {
    version: Arc<AtomicU8>,
    v1: Schema<BadgesQuery, EmptyMutation, EmptySubscription>,
    v2: Schema<RetiredQuery, EmptyMutation, EmptySubscription>,
}

async fn badges(
    State(badges): State<Badges>,
    Json(request): Json<async_graphql::Request>,
) -> Json<async_graphql::Response> {
    Json(match badges.version.load(Ordering::SeqCst) {
        1 => badges.v1.execute(request).await,
        _ => badges.v2.execute(request).await,
    })
}

/// Serves the badges subgraph on port 0: its switch and its URL.
async fn badges_subgraph() -> (Arc<AtomicU8>, String) {
    let state = Badges {
        version: Arc::new(AtomicU8::new(1)),
        v1: Schema::build(BadgesQuery, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
        v2: Schema::build(RetiredQuery, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
    };
    let version = state.version.clone();
    let router = Router::new()
        .route("/graphql", post(badges))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (version, format!("http://{address}/graphql"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supergraph_recomposed_mid_stream_keeps_subscriptions_whose_fields_remain() {
    let (version, badges_url) = badges_subgraph().await;
    let mut deployment = Deployment::start(1, false).await;
    let badges = format!("badges={badges_url}");
    let gateway = deployment
        .gateway(0, &[&badges], &["--recompose-interval-secs", "0"])
        .await;
    let url = format!("http://{gateway}/graphql");
    let posts = deployment.posts[0].address.clone();
    let (_, alice_token) = register(&gateway, "alice").await;
    let (bob, bob_token) = register(&gateway, "bob").await;
    let post = create_post(&gateway, &alice_token, "a post").await;
    let plain = "subscription($p: ID!) { commentAdded(postId: $p) { body author { username } } }";
    let badged =
        "subscription($p: ID!) { commentAdded(postId: $p) { body author { username badge } } }";

    let mut kept = LiveClient::subscribe("ws", &url, plain, json!({ "p": post }), None).await;
    let mut dropped = LiveClient::subscribe("sse", &url, badged, json!({ "p": post }), None).await;
    eventually("both subscriptions held", CLIENT_WAIT, || async {
        let upstreams = metric(&gateway, UPSTREAMS).await;
        let ready = metric(&gateway, CLIENTS).await == 2.0
            && upstreams >= 1.0
            && metric(&posts, POSTS_HELD).await == upstreams;
        ready.then_some(())
    })
    .await;
    let comment = json!({ "p": post, "b": "before" });
    write(&gateway, ADD_COMMENT, comment, &bob_token).await;
    let (kept_before, dropped_before) = (kept.message().await, dropped.message().await);

    // A deploy: the users subgraph restarts, the badges subgraph drops `User.badge`.
    deployment.restart_users().await;
    version.store(2, Ordering::SeqCst);
    deployment.gateways[0].signal("HUP").await;
    deployment.gateways[0]
        .wait_for_log("serving the new supergraph")
        .await;
    let (dropped_error, dropped_end) = (dropped.message().await, dropped.message().await);
    let comment = json!({ "p": post, "b": "after" });
    write(&gateway, ADD_COMMENT, comment, &bob_token).await;
    let kept_after = kept.message().await;

    assert_eq!(
        kept_before,
        json!({ "next": { "data": { "commentAdded": { "body": "before", "author": { "username": "bob" } } } } })
    );
    assert_eq!(
        dropped_before,
        json!({ "next": { "data": { "commentAdded": {
            "body": "before",
            "author": { "username": "bob", "badge": format!("badge of {bob}") },
        } } } })
    );
    assert_eq!(
        dropped_error["next"]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{dropped_error}"
    );
    assert_eq!(dropped_end, json!({ "complete": true }));
    assert_eq!(
        kept_after,
        json!({ "next": { "data": { "commentAdded": { "body": "after", "author": { "username": "bob" } } } } }),
        "the subscription whose fields remain goes on, on the same connection"
    );
    assert_eq!(metric(&gateway, CLIENTS).await, 1.0);
}
