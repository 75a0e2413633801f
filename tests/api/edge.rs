//! The HTTP edge as a hostile client meets it: idle and slow connections are closed, more
//! connections than the cap wait without taking the process offline, many large bodies at
//! once stay within the bytes-in-flight bound, the deadline answers `504` with the data
//! that is complete, rate limits (alone and shared by two gateways through Redis), the
//! client address through trusted proxies only, APQ registration rules, and login
//! throttling in one process and in the three-process shape.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use clap::Parser;
use gantry::cli::{Cli, Command};
use gantry_gateway::persisted::sha256_hex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Backend, LOGIN, Process, REGISTER, TestApp, error_code, fresh_database, start,
    start_with_file_limit,
};

/// `gantry serve` with `flags`, in this process, on a fresh SQLite database.
pub(crate) async fn serve_with(flags: &[&str]) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let data = data_dir.path().display().to_string();
    let mut args = vec![
        "gantry",
        "serve",
        "--data-dir",
        &data,
        "--database-url",
        &url,
    ];
    args.extend_from_slice(flags);
    let cli = Cli::try_parse_from(args).unwrap();
    let Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    let app = gantry::commands::serve::build(&serve.common, &serve)
        .await
        .unwrap();
    TestApp::serve(app.router, Some(app.tasks), data_dir, url).await
}

/// `gantry serve` as a process, on a fresh SQLite database in its own data dir.
pub(crate) async fn serve_process(
    files: Option<u64>,
    flags: &[&str],
) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut args = vec!["serve"];
    args.extend_from_slice(flags);
    let process = start_with_file_limit(files, &args, &[("GANTRY_DATA_DIR", data.as_str())]).await;
    (process, dir)
}

/// Reads until the server closes the connection (at most 30 s); what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) async fn post(client: &reqwest::Client, address: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("http://{address}/graphql"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn idle_and_byte_a_second_connections_are_closed_after_the_configured_timeouts() {
    let (gantry, _dir) = serve_process(
        None,
        &[
            "--idle-timeout-ms",
            "500",
            "--header-read-timeout-ms",
            "500",
            "--body-read-timeout-ms",
            "800",
        ],
    )
    .await;
    let address = gantry.address.clone();

    // A connection that never sends anything.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    assert_eq!(until_closed(&mut idle).await, "");

    // Headers a byte every 100 ms: cut off without an answer.
    let mut slow_headers = TcpStream::connect(&address).await.unwrap();
    let request = b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    for byte in request {
        if slow_headers.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!until_closed(&mut slow_headers).await.contains("200"));

    // Headers at once, then the body a byte every 100 ms: 408.
    let mut slow_body = TcpStream::connect(&address).await.unwrap();
    slow_body
        .write_all(b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let writer = async {
        for _ in 0..100 {
            if slow_body.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    writer.await;
    let answer = until_closed(&mut slow_body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // The server still answers.
    let health = reqwest::get(format!("http://{address}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn more_connections_than_the_file_limit_allows_do_not_stop_health_once_they_go() {
    // 300 idle sockets against a file limit of 256: the cap keeps accept working, and the
    // idle timeout closes them, so /health answers again while the client still holds them.
    let (gantry, _dir) = serve_process(Some(256), &["--idle-timeout-ms", "1000"]).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&gantry.address).await.unwrap());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let health = client
        .get(format!("http://{}/health", gantry.address))
        .send()
        .await
        .expect("/health answers once the idle connections are closed");
    assert_eq!(health.status(), 200);
    let logs = gantry.logs.lock().unwrap().join("\n");
    assert!(!logs.contains("Too many open files"), "{logs}");
    drop(idle);
}

/// The most memory the process has held so far, in bytes (`VmHWM`).
pub(crate) fn peak_rss(process: &Process) -> u64 {
    let pid = process.child.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn many_large_bodies_at_once_stay_within_the_bytes_in_flight_bound() {
    let (gantry, _dir) = serve_process(None, &["--body-bytes-in-flight", "8388608"]).await;
    let client = reqwest::Client::new();
    // Warm up, so the baseline includes the first request's allocations.
    post(
        &client,
        &gantry.address,
        json!({ "query": "{ __typename }" }),
    )
    .await;
    let before = peak_rss(&gantry);
    let pad = "x".repeat(1_900_000);
    let body =
        Arc::new(json!({ "query": "{ __typename }", "variables": { "pad": pad } }).to_string());
    let sends = (0..200).map(|_| {
        let (client, body, address) = (client.clone(), body.clone(), gantry.address.clone());
        async move {
            client
                .post(format!("http://{address}/graphql"))
                .header("content-type", "application/json")
                .body(body.as_str().to_owned())
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 200), "{statuses:?}");
    let grown = peak_rss(&gantry).saturating_sub(before);
    assert!(
        grown < 200 * 1024 * 1024,
        "200 bodies of 1.9 MB grew the peak by {} MB",
        grown / 1024 / 1024
    );
}

struct Fast;

#[Object(name = "Query")]
impl Fast {
    async fn fast(&self) -> &str {
        "here"
    }
}

struct Slow;

#[Object(name = "Query")]
impl Slow {
    async fn slow(&self) -> Option<String> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Some("late".into())
    }
}

/// A signing key in `dir`, for a gateway in front of toy subgraphs that issue no tokens.
pub(crate) fn key_file(dir: &std::path::Path) -> String {
    gantry_kit::keys::SigningKey::load(&gantry_kit::keys::KeySettings {
        data_dir: dir.into(),
        ..Default::default()
    })
    .unwrap();
    dir.join(gantry_kit::keys::GENERATED_KEY_FILE)
        .display()
        .to_string()
}

/// Serves a toy subgraph over HTTP on a free local port.
pub(crate) async fn toy_subgraph<Q: async_graphql::ObjectType + 'static>(query: Q) -> String {
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move |request: async_graphql_axum::GraphQLRequest| {
            let schema = schema.clone();
            async move {
                async_graphql_axum::GraphQLResponse::from(
                    schema.execute(request.into_inner()).await,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

#[tokio::test]
async fn the_deadline_answers_504_gateway_timeout_with_the_data_that_is_complete() {
    let fast = format!("fast={}", toy_subgraph(Fast).await);
    let slow = format!("slow={}", toy_subgraph(Slow).await);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &fast,
            "--subgraph",
            &slow,
            "--request-timeout-ms",
            "700",
        ],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await;
    let (status, body) = post(
        &reqwest::Client::new(),
        &gateway.address,
        json!({ "query": "{ fast slow }" }),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body["data"],
        json!({ "fast": "here", "slow": null }),
        "{body}"
    );
    assert_eq!(error_code(&body), Some("GATEWAY_TIMEOUT"), "{body}");
}

const LATEST: &str = "{ latestPosts(first: 1) { edges { node { id } } } }";

#[tokio::test]
async fn requests_over_the_rate_limit_get_429_with_retry_after_without_redis() {
    let app = serve_with(&["--rate-limit-requests", "3", "--response-cache", "false"]).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let (status, body) = post(
            &client,
            &app.address.to_string(),
            json!({ "query": LATEST }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let response = client
        .post(app.url("/graphql"))
        .json(&json!({ "query": LATEST }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
}

struct Hello;

#[Object(name = "Query")]
impl Hello {
    async fn hello(&self) -> &str {
        "hello"
    }
}

#[tokio::test]
async fn two_gateways_sharing_redis_share_one_rate_limit() {
    let toy = format!("toy={}", toy_subgraph(Hello).await);
    let redis =
        std::env::var("GANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("GANTRY_REDIS_PREFIX", prefix.as_str()),
        ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
    ];
    let args = [
        "gateway",
        "--subgraph",
        &toy,
        "--rate-limit-requests",
        "4",
        "--response-cache",
        "false",
    ];
    let a = start(&args, &env).await;
    let b = start(&args, &env).await;
    let client = reqwest::Client::new();
    let hello = json!({ "query": "{ hello }" });
    for gateway in [&a, &b, &a, &b] {
        let (status, body) = post(&client, &gateway.address, hello.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    for gateway in [&a, &b] {
        let (status, body) = post(&client, &gateway.address, hello.clone()).await;
        assert_eq!(status, 429, "the allowance is shared: {body}");
        assert_eq!(error_code(&body), Some("RATE_LIMITED"));
    }
}

async fn register_as(app: &TestApp, username: &str, forwarded_for: &str) -> Value {
    reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "query": REGISTER, "variables": { "input": {
            "username": username,
            "email": format!("{username}@example.com"),
            "password": "correct horse battery",
            "displayName": username,
        }}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn registrations_are_limited_per_client_address_through_a_trusted_proxy() {
    let app = serve_with(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--registrations-per-hour",
        "1",
    ])
    .await;
    let first = register_as(&app, "first", "203.0.113.1").await;
    assert_eq!(first["errors"], Value::Null, "{first}");
    let again = register_as(&app, "second", "203.0.113.1").await;
    assert_eq!(error_code(&again), Some("RATE_LIMITED"), "{again}");
    assert!(
        again["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            > 0
    );
    let elsewhere = register_as(&app, "third", "203.0.113.2").await;
    assert_eq!(
        elsewhere["errors"],
        Value::Null,
        "another address: {elsewhere}"
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // This test's own address (127.0.0.1) is not among the trusted proxies.
    let app = serve_with(&[
        "--trusted-proxies",
        "10.0.0.0/8",
        "--registrations-per-hour",
        "1",
    ])
    .await;
    let first = register_as(&app, "first", "203.0.113.1").await;
    assert_eq!(first["errors"], Value::Null, "{first}");
    let forged = register_as(&app, "second", "203.0.113.2").await;
    assert_eq!(error_code(&forged), Some("RATE_LIMITED"), "{forged}");
}

#[tokio::test]
async fn serve_honours_trust_forwarded_for() {
    let app = serve_with(&["--trust-forwarded-for", "--registrations-per-hour", "1"]).await;
    let first = register_as(&app, "first", "203.0.113.1").await;
    assert_eq!(first["errors"], Value::Null, "{first}");
    let other = register_as(&app, "second", "203.0.113.2").await;
    assert_eq!(other["errors"], Value::Null, "{other}");
}

/// Posts `query` with its APQ hash; the response.
async fn apq(app: &TestApp, query: Option<&str>, hash: &str) -> Value {
    let mut body =
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    reqwest::Client::new()
        .post(app.url("/graphql"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn apq_registers_neither_junk_nor_texts_over_the_size_cap() {
    let app = serve_with(&["--apq-max-bytes", "100"]).await;
    let junk = "x".repeat(5_000);
    let hash = sha256_hex(&junk);
    let refused = apq(&app, Some(&junk), &hash).await;
    assert_eq!(
        error_code(&refused),
        Some("GRAPHQL_PARSE_FAILED"),
        "{refused}"
    );
    let lookup = apq(&app, None, &hash).await;
    assert_eq!(
        error_code(&lookup),
        Some("PERSISTED_QUERY_NOT_FOUND"),
        "junk was registered: {lookup}"
    );

    let long = format!("{{ {} }}", "__typename ".repeat(20));
    let hash = sha256_hex(&long);
    let ran = apq(&app, Some(&long), &hash).await;
    assert_eq!(ran["data"]["__typename"], "Query", "it still runs: {ran}");
    let lookup = apq(&app, None, &hash).await;
    assert_eq!(
        error_code(&lookup),
        Some("PERSISTED_QUERY_NOT_FOUND"),
        "{lookup}"
    );

    let short = "{ __typename }";
    apq(&app, Some(short), &sha256_hex(short)).await;
    let lookup = apq(&app, None, &sha256_hex(short)).await;
    assert_eq!(lookup["data"]["__typename"], "Query", "{lookup}");
}

#[tokio::test]
async fn with_apq_registration_off_manifests_still_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("latest.graphql"),
        "query Latest { latestPosts(first: 1) { edges { node { id } } } }",
    )
    .unwrap();
    let json = gantry::commands::manifest::manifest_json(dir.path()).unwrap();
    let manifest: Value = serde_json::from_str(&json).unwrap();
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, json).unwrap();
    let path = path.display().to_string();
    let app = serve_with(&["--apq-registration", "false", "--manifest", &path]).await;
    let id = manifest["operations"][0]["id"].as_str().unwrap().to_owned();
    let by_id: Value = reqwest::Client::new()
        .post(app.url("/graphql"))
        .json(&json!({ "documentId": id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_id, json!({ "data": { "latestPosts": { "edges": [] } } }));
    let text = "{ __typename }";
    let ran = apq(&app, Some(text), &sha256_hex(text)).await;
    assert_eq!(ran["data"]["__typename"], "Query", "{ran}");
    let lookup = apq(&app, None, &sha256_hex(text)).await;
    assert_eq!(
        error_code(&lookup),
        Some("PERSISTED_QUERY_NOT_SUPPORTED"),
        "{lookup}"
    );
}

#[tokio::test]
async fn a_login_longer_than_any_account_s_is_refused_before_any_work() {
    let app = TestApp::users(Backend::Sqlite).await;
    let response = app.login(&"a".repeat(1_900_000), "whatever password").await;
    assert_eq!(
        error_code(&response),
        Some("BAD_USER_INPUT"),
        "{}",
        &response.to_string()[..200.min(response.to_string().len())]
    );
    assert_eq!(response["errors"][0]["extensions"]["field"], "login");
}

#[tokio::test]
async fn concurrent_guesses_are_reserved_before_verifying_so_only_the_threshold_is_evaluated() {
    let app = TestApp::users(Backend::Sqlite).await;
    app.register("victim").await;
    let guesses = (0..40).map(|i| {
        app.login(
            "victim",
            if i == 39 {
                "correct horse battery"
            } else {
                "wrong password!"
            },
        )
    });
    let answers = futures::future::join_all(guesses).await;
    let evaluated = answers
        .iter()
        .filter(|a| error_code(a) != Some("RATE_LIMITED"))
        .count();
    assert!(
        evaluated <= 5,
        "{evaluated} of 40 concurrent guesses were evaluated"
    );
}

#[tokio::test]
async fn a_username_and_its_email_count_against_one_account() {
    let app = TestApp::users(Backend::Sqlite).await;
    app.register("alice").await;
    for login in [
        "alice",
        "alice@example.com",
        "ALICE",
        "alice@example.com",
        "alice",
    ] {
        let refused = app.login(login, "wrong password!").await;
        assert_eq!(error_code(&refused), Some("UNAUTHENTICATED"), "{refused}");
    }
    let throttled = app.login("alice@example.com", "wrong password!").await;
    assert_eq!(error_code(&throttled), Some("RATE_LIMITED"), "{throttled}");
}

async fn login_from(
    client: &reqwest::Client,
    address: &str,
    from: &str,
    login: &str,
    password: &str,
) -> Value {
    client
        .post(format!("http://{address}/graphql"))
        .header("x-forwarded-for", from)
        .json(&json!({ "query": LOGIN, "variables": { "input": { "login": login, "password": password } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn in_three_processes_a_blocked_address_never_blocks_another_address_correct_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let database = format!("sqlite://{}/gantry.db?mode=rwc", data);
    let redis =
        std::env::var("GANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("gantry-test-{}:", uuid::Uuid::now_v7().simple());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("GANTRY_REDIS_PREFIX", prefix.as_str()),
        ("GANTRY_REDIS_TIMEOUT_MS", "1000"),
    ];
    let users = start(
        &["subgraph", "users", "--login-address-threshold", "3"],
        &env,
    )
    .await;
    let users_url = format!("users=http://{}/graphql", users.address);
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &users_url,
            "--trusted-proxies",
            "127.0.0.1",
        ],
        &env,
    )
    .await;
    let client = reqwest::Client::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let (_, body) = post(
            &client,
            &gateway.address,
            json!({ "query": REGISTER, "variables": { "input": {
            "username": name, "email": format!("{name}@example.com"),
            "password": "correct horse battery", "displayName": name }}}),
        )
        .await;
        assert_eq!(body["errors"], Value::Null, "{body}");
    }
    // One address guesses at three accounts until it must wait.
    for victim in ["carol", "dave", "erin"] {
        let refused = login_from(
            &client,
            &gateway.address,
            "198.51.100.1",
            victim,
            "wrong password!",
        )
        .await;
        assert_eq!(error_code(&refused), Some("UNAUTHENTICATED"), "{refused}");
    }
    let blocked = login_from(
        &client,
        &gateway.address,
        "198.51.100.1",
        "bob",
        "correct horse battery",
    )
    .await;
    assert_eq!(error_code(&blocked), Some("RATE_LIMITED"), "{blocked}");
    // Another client, another address: its correct login goes through.
    let other = login_from(
        &client,
        &gateway.address,
        "198.51.100.2",
        "bob",
        "correct horse battery",
    )
    .await;
    assert_eq!(other["errors"], Value::Null, "{other}");
    assert_eq!(other["data"]["login"]["user"]["username"], "bob");
    // The counters are in Redis, where a second users replica would read them.
    let mut redis = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}login:address:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.ends_with("198.51.100.1")), "{keys:?}");
}
