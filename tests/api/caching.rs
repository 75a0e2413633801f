//! The response cache as a client sees it: `Cache-Control` and `x-cache` headers, shared
//! through Redis by two `gantry serve` replicas, invalidated by mutations (also of what a
//! query names only in its arguments, and while reads race the writes), and bypassed
//! (never failing a request) while Redis is down, whether it went away or never answered.

use std::sync::Arc;
use std::time::Duration;

use gantry::cli::{GatewayOptions, RedisArgs, ServeArgs};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    Backend, Stack, TestApp, TestDatabase, eventually, free_port, fresh_database, redis_server,
    settings, start,
};

/// `gantry serve` over `data_dir` and `url`, with these gateway options.
async fn replica(data_dir: Arc<TempDir>, url: TestDatabase, options: GatewayOptions) -> TestApp {
    // Some tests register dozens of accounts, all from this one address.
    let common = settings(data_dir.path(), &url, &["--registrations-per-hour", "1000"]);
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

fn with_redis(port: u16, prefix: &str) -> GatewayOptions {
    GatewayOptions {
        redis: RedisArgs {
            redis_url: Some(format!("redis://127.0.0.1:{port}")),
            redis_prefix: prefix.to_owned(),
            redis_timeout_ms: 200,
        },
        response_cache: Some(true),
        ..GatewayOptions::default()
    }
}

/// POSTs an operation; the headers and the body.
async fn send(
    app: &TestApp,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> (HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

const POST: &str = "query($id: ID!) { post(id: $id) { id body author { username } } }";
const EDIT: &str =
    "mutation($id: ID!, $body: String!) { editPost(id: $id, body: $body) { id body } }";
const CREATE: &str = "mutation($b: String!) { createPost(input: { body: $b }) { id } }";

async fn alice_with_a_post(app: &TestApp) -> (String, String) {
    let token = app.register("alice").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, created) = send(app, CREATE, json!({ "b": "first draft" }), Some(&token)).await;
    let id = created["data"]["createPost"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, id)
}

#[tokio::test]
async fn a_public_query_is_cached_in_process_and_a_mutation_is_never_cached() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let options = GatewayOptions {
        response_cache: Some(true),
        ..GatewayOptions::default()
    };
    let app = replica(data_dir, url, options).await;
    let (token, id) = alice_with_a_post(&app).await;

    let (first, body) = send(&app, POST, json!({ "id": id }), None).await;
    let (second, cached) = send(&app, POST, json!({ "id": id }), None).await;

    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    assert_eq!(header(&first, "cache-control"), Some("public, max-age=10"));
    assert_eq!(header(&second, "x-cache"), Some("HIT"));
    assert_eq!(body, cached);
    let (edited, _) = send(&app, EDIT, json!({ "id": id, "body": "x" }), Some(&token)).await;
    assert_eq!(header(&edited, "cache-control"), Some("no-store"));
    assert_eq!(header(&edited, "x-cache"), None);
    let (me, _) = send(&app, "{ me { username email } }", json!({}), Some(&token)).await;
    assert_eq!(header(&me, "cache-control"), Some("private, max-age=30"));
}

#[tokio::test]
async fn a_posts_cached_page_changes_right_after_edit_post_through_either_replica() {
    let port = free_port();
    let _redis = redis_server(port).await;
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let a = replica(data_dir.clone(), url.clone(), with_redis(port, &prefix)).await;
    let b = replica(data_dir, url, with_redis(port, &prefix)).await;
    let (token, id) = alice_with_a_post(&a).await;

    let (miss, _) = send(&a, POST, json!({ "id": id }), None).await;
    let (hit, cached) = send(&b, POST, json!({ "id": id }), None).await;
    assert_eq!(header(&miss, "x-cache"), Some("MISS"));
    assert_eq!(
        header(&hit, "x-cache"),
        Some("HIT"),
        "replica b reads a's entry"
    );
    assert_eq!(cached["data"]["post"]["body"], "first draft");

    send(
        &a,
        EDIT,
        json!({ "id": id, "body": "second draft" }),
        Some(&token),
    )
    .await;
    let (after, fresh) = send(&b, POST, json!({ "id": id }), None).await;

    assert_eq!(header(&after, "x-cache"), Some("MISS"));
    assert_eq!(fresh["data"]["post"]["body"], "second draft");
}

#[tokio::test]
async fn with_redis_down_requests_still_succeed_and_caching_comes_back_with_it() {
    let port = free_port();
    let mut redis = redis_server(port).await;
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let app = replica(data_dir, url, with_redis(port, &prefix)).await;
    let (_, id) = alice_with_a_post(&app).await;
    // A response is stored after it is sent: ask until the copy is there.
    eventually(
        "a cached copy in Redis",
        Duration::from_secs(10),
        async || {
            let (headers, _) = send(&app, POST, json!({ "id": id }), None).await;
            (header(&headers, "x-cache") == Some("HIT")).then_some(())
        },
    )
    .await;

    redis.kill().await.unwrap();
    for _ in 0..3 {
        let (headers, body) = send(&app, POST, json!({ "id": id }), None).await;
        assert_eq!(body["data"]["post"]["body"], "first draft");
        assert_ne!(header(&headers, "x-cache"), Some("HIT"));
    }
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["redis"]["status"], "degraded");
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gantry_redis_up 0"), "{metrics}");
    assert!(!metrics.contains("gantry_cache_errors_total{cache=\"response\"} 0"));

    let _redis = redis_server(port).await;
    let mut hit_again = false;
    for _ in 0..100 {
        send(&app, POST, json!({ "id": id }), None).await;
        let (headers, _) = send(&app, POST, json!({ "id": id }), None).await;
        if header(&headers, "x-cache") == Some("HIT") {
            hit_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hit_again, "the cache serves again once Redis is back");
    let (_, ready) = app.get_json("/ready").await;
    assert_eq!(ready["checks"]["redis"]["status"], "ok");
}

const PROFILE: &str = "query($id: ID!) { user(id: $id) { id username followerCount } }";

#[tokio::test]
async fn serve_caches_by_default_and_an_account_deletion_drops_what_it_changed() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let app = replica(data_dir, url, GatewayOptions::default()).await;
    let alice = app.register("alice").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = app.register("bob").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, followed) = send(
        &app,
        "mutation($id: ID!) { follow(userId: $id) { id } }",
        json!({ "id": alice }),
        Some(&bob),
    )
    .await;
    assert_eq!(followed["errors"], Value::Null, "{followed}");

    send(&app, PROFILE, json!({ "id": alice }), None).await;
    let (hit, cached) = send(&app, PROFILE, json!({ "id": alice }), None).await;
    assert_eq!(
        header(&hit, "x-cache"),
        Some("HIT"),
        "on by default in serve"
    );
    assert_eq!(cached["data"]["user"]["followerCount"], 1);

    // Bob's deletion reaches the posts side through the outbox; the profile names no id of
    // Bob's, yet its cached count (kept 30 s otherwise) is dropped with it.
    let (_, deleted) = send(
        &app,
        "mutation { deleteAccount(password: \"correct horse battery\") }",
        json!({}),
        Some(&bob),
    )
    .await;
    assert_eq!(deleted["data"]["deleteAccount"], true, "{deleted}");
    let mut count = Value::Null;
    for _ in 0..50 {
        let (_, now) = send(&app, PROFILE, json!({ "id": alice }), None).await;
        count = now["data"]["user"]["followerCount"].clone();
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 0);
}

async fn metric(app: &TestApp, line_prefix: &str) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in {text}"))
}

#[tokio::test]
async fn the_entity_cache_shares_users_between_operations_until_a_mutation_changes_them() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Postgres, data_dir.path()).await;
    let options = GatewayOptions {
        response_cache: Some(false),
        entity_cache: true,
        ..GatewayOptions::default()
    };
    let app = replica(data_dir, url, options).await;
    let (token, id) = alice_with_a_post(&app).await;
    let latest =
        "{ latestPosts(first: 5) { edges { node { id author { username displayName } } } } }";
    let page = "query($id: ID!) { post(id: $id) { body author { username displayName } } }";

    let (_, listed) = send(&app, latest, json!({}), None).await;
    assert_eq!(
        listed["data"]["latestPosts"]["edges"][0]["node"]["author"]["displayName"],
        "ALICE"
    );
    let (_, shown) = send(&app, page, json!({ "id": id }), None).await;
    assert_eq!(shown["data"]["post"]["author"]["displayName"], "ALICE");
    assert!(
        metric(&app, "gantry_cache_hits_total{cache=\"entity\"}").await >= 1.0,
        "the post page's author came from the feed's fetch"
    );
    assert!(metric(&app, "gantry_cache_hit_ratio{cache=\"entity\"}").await > 0.0);

    let (_, updated) = send(
        &app,
        "mutation { updateProfile(input: { displayName: \"Alice Liddell\" }) { id } }",
        json!({}),
        Some(&token),
    )
    .await;
    assert_eq!(updated["errors"], Value::Null, "{updated}");
    let (_, shown) = send(&app, page, json!({ "id": id }), None).await;
    assert_eq!(
        shown["data"]["post"]["author"]["displayName"],
        "Alice Liddell"
    );
    assert!(metric(&app, "gantry_cache_invalidations_total{cache=\"entity\"}").await >= 1.0);
}

/// A page whose post authors and comment authors both come from the users subgraph is
/// planned as one batch fetch of two `_entities` calls; its entities are cached like those
/// of any other entity fetch, so the page asked again reads them from the entity cache.
#[tokio::test]
async fn a_batch_fetchs_entities_are_served_from_the_entity_cache() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Postgres, data_dir.path()).await;
    let options = GatewayOptions {
        response_cache: Some(false),
        entity_cache: true,
        ..GatewayOptions::default()
    };
    let app = replica(data_dir, url, options).await;
    let (token, id) = alice_with_a_post(&app).await;
    let (_, commented) = send(
        &app,
        "mutation($p: ID!) { addComment(postId: $p, body: \"first!\") { id } }",
        json!({ "p": id }),
        Some(&token),
    )
    .await;
    assert_eq!(commented["errors"], Value::Null, "{commented}");
    let page = "{ latestPosts(first: 5) { edges { node { body author { displayName } \
                comments(first: 5) { edges { node { body author { username } } } } } } } }";

    let (_, first) = send(&app, page, json!({}), None).await;
    let hits = metric(&app, "gantry_cache_hits_total{cache=\"entity\"}").await;
    let (_, second) = send(&app, page, json!({}), None).await;

    let post = &first["data"]["latestPosts"]["edges"][0]["node"];
    assert_eq!(post["author"]["displayName"], "ALICE", "{first}");
    assert_eq!(
        post["comments"]["edges"][0]["node"]["author"]["username"],
        "alice"
    );
    assert_eq!(second, first);
    assert_eq!(
        metric(&app, "gantry_cache_hits_total{cache=\"entity\"}").await - hits,
        2.0,
        "both calls of the batch found alice in the entity cache"
    );
}

/// Redis that does not answer when a `gateway` starts is Redis lost later: the gateway
/// starts, answers every request with the shared cache bypassed (never a cache of its
/// own, which a mutation through another replica could not reach), reports Redis as
/// degraded, and uses Redis as soon as it answers.
#[tokio::test]
async fn a_gateway_started_before_its_redis_serves_uncached_and_caches_once_redis_answers() {
    let stack = Stack::new(Backend::Sqlite).await;
    let (_, token) = stack.user("alice").await;
    let id = stack.post(&token, "first draft").await;
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let users = format!("users={}", stack.users.url("/graphql"));
    let posts = format!("posts={}", stack.posts.url("/graphql"));
    let gateway_dir = tempfile::tempdir().unwrap();
    let data = gateway_dir.path().display().to_string();
    let gateway = start(
        &["gateway", "--subgraph", &users, "--subgraph", &posts],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("GANTRY_REDIS_PREFIX", prefix.as_str()),
            ("GANTRY_REDIS_TIMEOUT_MS", "200"),
        ],
    )
    .await;
    let base = format!("http://{}", gateway.address);
    let client = reqwest::Client::new();
    let ask = async || {
        let response = client
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": POST, "variables": { "id": id } }))
            .send()
            .await
            .unwrap();
        let cache = header(response.headers(), "x-cache").map(str::to_owned);
        let body: Value = response.json().await.unwrap();
        (cache, body)
    };
    let ready = async || -> (u16, Value) {
        let response = client.get(format!("{base}/ready")).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    };
    let metrics = async || {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    for _ in 0..3 {
        let (cache, body) = ask().await;
        assert_eq!(body["data"]["post"]["body"], "first draft", "{body}");
        assert_ne!(
            cache.as_deref(),
            Some("HIT"),
            "no per-process cache stands in"
        );
    }
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "degraded", "{body}");
    assert!(metrics().await.contains("gantry_redis_up 0"));

    let _redis = redis_server(port).await;
    eventually(
        "Redis is reported ok",
        Duration::from_secs(30),
        async || {
            let (status, body) = ready().await;
            (status == 200 && body["checks"]["redis"]["status"] == "ok").then_some(())
        },
    )
    .await;
    assert!(metrics().await.contains("gantry_redis_up 1"));
    let (first, _) = ask().await;
    assert_ne!(first.as_deref(), Some("HIT"), "nothing was kept meanwhile");
    let cached = eventually(
        "a cached copy in Redis",
        Duration::from_secs(10),
        async || {
            let (cache, body) = ask().await;
            (cache.as_deref() == Some("HIT")).then_some(body)
        },
    )
    .await;
    assert_eq!(cached["data"]["post"]["body"], "first draft");
}

const LIKES: &str = "query($id: ID!) { post(id: $id) { likeCount } }";
const LIKE: &str = "mutation($id: ID!) { likePost(postId: $id) { id } }";
const UNLIKE: &str = "mutation($id: ID!) { unlikePost(postId: $id) { id } }";

#[tokio::test]
async fn a_like_count_read_by_post_id_alone_changes_right_after_like_post() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let app = replica(data_dir, url, GatewayOptions::default()).await;
    let (_, post) = alice_with_a_post(&app).await;
    let bob = app.register("bob").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&app, LIKES, json!({ "id": post }), None).await;
    let (hit, cached) = send(&app, LIKES, json!({ "id": post }), None).await;
    assert_eq!(header(&hit, "x-cache"), Some("HIT"));
    assert_eq!(cached["data"]["post"]["likeCount"], 0);

    let (_, liked) = send(&app, LIKE, json!({ "id": post }), Some(&bob)).await;
    assert_eq!(liked["errors"], Value::Null, "{liked}");
    let (after, fresh) = send(&app, LIKES, json!({ "id": post }), None).await;

    // The response holds no id, yet the query names the post.
    assert_eq!(header(&after, "x-cache"), Some("MISS"));
    assert_eq!(fresh["data"]["post"]["likeCount"], 1);
}

/// Reads `post(id:) { likeCount }` over and over through every replica until stopped.
fn readers(
    urls: Vec<String>,
    post: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|reader| {
            let (urls, stop) = (urls.clone(), stop.clone());
            let body = json!({ "query": LIKES, "variables": { "id": post } });
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut turn = reader;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = &urls[turn % urls.len()];
                    let response = client.post(url).json(&body).send().await.unwrap();
                    assert!(response.status().is_success());
                    turn += 1;
                }
            })
        })
        .collect()
}

/// Each of `tokens` sends `mutation` for `post`, all at once, alternating replicas.
async fn all_at_once(replicas: &[&TestApp], mutation: &str, post: &str, tokens: &[String]) {
    let sent = tokens.iter().enumerate().map(|(i, token)| {
        send(
            replicas[i % replicas.len()],
            mutation,
            json!({ "id": post }),
            Some(token),
        )
    });
    for (_, body) in futures::future::join_all(sent).await {
        assert_eq!(body["errors"], Value::Null, "{body}");
    }
}

/// What each replica reports now, asked twice (the second may be a cache hit).
async fn like_counts(replicas: &[&TestApp], post: &str) -> Vec<Value> {
    let mut counts = Vec::new();
    for app in replicas {
        for _ in 0..2 {
            let (_, body) = send(app, LIKES, json!({ "id": post }), None).await;
            counts.push(body["data"]["post"]["likeCount"].clone());
        }
    }
    counts
}

#[tokio::test]
async fn fifty_likes_then_fifty_unlikes_under_concurrent_reads_leave_a_count_of_zero() {
    let port = free_port();
    let _redis = redis_server(port).await;
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Postgres, data_dir.path()).await;
    let a = replica(data_dir.clone(), url.clone(), with_redis(port, &prefix)).await;
    let b = replica(data_dir, url, with_redis(port, &prefix)).await;
    let replicas = [&a, &b];
    let (_, post) = alice_with_a_post(&a).await;
    let names: Vec<String> = (0..50).map(|i| format!("fan{i}")).collect();
    let registered = futures::future::join_all(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| replicas[i % 2].register(name)),
    )
    .await;
    let tokens: Vec<String> = registered
        .iter()
        .map(|payload| payload["accessToken"].as_str().unwrap().to_owned())
        .collect();
    let urls = vec![a.url("/graphql"), b.url("/graphql")];

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = readers(urls.clone(), &post, stop.clone());
    all_at_once(&replicas, LIKE, &post, &tokens).await;
    let after_likes = like_counts(&replicas, &post).await;
    all_at_once(&replicas, UNLIKE, &post, &tokens).await;
    let after_unlikes = like_counts(&replicas, &post).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in reading {
        reader.await.unwrap();
    }

    assert_eq!(after_likes, vec![json!(50); 4]);
    assert_eq!(after_unlikes, vec![json!(0); 4]);
}
