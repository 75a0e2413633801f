//! Persisted queries as Apollo clients send them: APQ over POST and GET (hash alone, then
//! hash and text), manifests by `documentId`, `doc_id` and hash, safelisting, manifest
//! reloads, `gantry manifest`, and registrations shared by two gateways through Redis.

use std::sync::Arc;
use std::time::Duration;

use gantry::cli::{GatewayOptions, RedisArgs, ServeArgs};
use gantry_gateway::persisted::sha256_hex;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_code, eventually, fresh_database, settings, start};

const LATEST: &str = "query Latest($n: Int) { latestPosts(first: $n) { edges { node { body } } } }";
const LIKE: &str = "mutation Like($id: ID!) { likePost(postId: $id) { likeCount } }";
const NOT_FOUND_BODY: &str = r#"{"errors":[{"message":"PersistedQueryNotFound","extensions":{"code":"PERSISTED_QUERY_NOT_FOUND"}}]}"#;

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

fn apq(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs `body` as Apollo Client does, answering `(status, body text)`.
async fn post(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// GETs with the given query parameters (URL-encoded here).
async fn get(app: &TestApp, params: &[(&str, String)]) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .query(params)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn write_manifest(path: &std::path::Path, operations: &[(&str, &str, &str)]) {
    let operations: Vec<Value> = operations
        .iter()
        .map(|(name, kind, body)| {
            json!({ "id": sha256_hex(body), "body": body, "name": name, "type": kind })
        })
        .collect();
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": operations,
    });
    std::fs::write(path, manifest.to_string()).unwrap();
}

fn with_manifest(path: &std::path::Path, safelist: bool) -> GatewayOptions {
    GatewayOptions {
        manifest: Some(path.to_owned()),
        safelist,
        ..GatewayOptions::default()
    }
}

#[tokio::test]
async fn apq_over_post_then_get_follows_apollo_clients_retry() {
    let app = serve(GatewayOptions::default()).await;
    let hash = sha256_hex(LATEST);

    // Hash alone, unknown: 200 with the exact body Apollo Client matches, whatever Accept.
    let (status, body) = post(
        &app,
        json!({ "extensions": apq(&hash), "variables": { "n": 1 } }),
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, NOT_FOUND_BODY));
    let (status, body) = post(
        &app,
        json!({ "extensions": apq(&hash) }),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, NOT_FOUND_BODY));

    // The retry with the text registers it and runs.
    let (status, body) = post(
        &app,
        json!({ "query": LATEST, "operationName": "Latest", "variables": { "n": 1 }, "extensions": apq(&hash) }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parsed(&body),
        json!({ "data": { "latestPosts": { "edges": [] } } })
    );

    // Apollo Client's GET with the hash alone now runs the registered text.
    let (status, body) = get(
        &app,
        &[
            ("operationName", "Latest".into()),
            ("variables", json!({ "n": 1 }).to_string()),
            ("extensions", apq(&hash).to_string()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parsed(&body),
        json!({ "data": { "latestPosts": { "edges": [] } } })
    );
}

#[tokio::test]
async fn a_hash_that_does_not_match_the_text_is_400_and_nothing_is_registered() {
    let app = serve(GatewayOptions::default()).await;
    let wrong = sha256_hex("{ me { id } }");
    let (status, body) = post(
        &app,
        json!({ "query": LATEST, "extensions": apq(&wrong) }),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_code(&parsed(&body)),
        Some("PERSISTED_QUERY_HASH_MISMATCH")
    );
    let (status, body) = post(&app, json!({ "extensions": apq(&wrong) }), &[]).await;
    assert_eq!((status, body.as_str()), (200, NOT_FOUND_BODY));
}

#[tokio::test]
async fn manifest_operations_run_by_document_id_doc_id_and_hash_and_get_mutations_are_405() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    write_manifest(
        &path,
        &[("Latest", "query", LATEST), ("Like", "mutation", LIKE)],
    );
    let app = serve(with_manifest(&path, false)).await;
    let empty = json!({ "data": { "latestPosts": { "edges": [] } } });

    let (status, body) = post(
        &app,
        json!({ "documentId": sha256_hex(LATEST), "variables": { "n": 2 } }),
        &[],
    )
    .await;
    assert_eq!((status, parsed(&body)), (200, empty.clone()), "{body}");
    let (status, body) = post(
        &app,
        json!({ "doc_id": sha256_hex(LATEST), "variables": { "n": 2 } }),
        &[],
    )
    .await;
    assert_eq!((status, parsed(&body)), (200, empty.clone()), "{body}");
    let (status, body) = get(
        &app,
        &[
            ("variables", json!({ "n": 2 }).to_string()),
            ("extensions", apq(&sha256_hex(LATEST)).to_string()),
        ],
    )
    .await;
    assert_eq!((status, parsed(&body)), (200, empty.clone()), "{body}");
    let (status, _) = get(&app, &[("documentId", sha256_hex(LIKE))]).await;
    assert_eq!(status, 405);

    // Free-form text and APQ still work without --safelist.
    let (status, _) = post(&app, json!({ "query": "{ me { id } }" }), &[]).await;
    assert_eq!(status, 200);
    let (status, body) = post(&app, json!({ "documentId": "unknown" }), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        error_code(&parsed(&body)),
        Some("PERSISTED_QUERY_NOT_IN_LIST")
    );
}

#[tokio::test]
async fn the_safelist_refuses_what_is_not_listed_unless_the_bypass_header_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    write_manifest(&path, &[("Latest", "query", LATEST)]);
    let mut options = with_manifest(&path, true);
    options.safelist_bypass_header = Some("x-internal-tool:let-me-in".parse().unwrap());
    let app = serve(options).await;
    let client_name = [("apollographql-client-name", "ios-app")];

    let (status, body) = post(&app, json!({ "documentId": "sha256:0000" }), &client_name).await;
    assert_eq!(status, 404);
    assert_eq!(
        error_code(&parsed(&body)),
        Some("PERSISTED_QUERY_NOT_IN_LIST")
    );

    let (status, body) = post(&app, json!({ "query": "{ me { id } }" }), &client_name).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&parsed(&body)), Some("QUERY_NOT_IN_SAFELIST"));

    let (status, body) = post(
        &app,
        json!({ "query": "{ me { id } }" }),
        &[("x-internal-tool", "wrong")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(
        &app,
        json!({ "query": "{ me { id } }" }),
        &[("x-internal-tool", "let-me-in")],
    )
    .await;
    // Past the safelist, the operation runs: anonymous, `me` is null (and refused by
    // its `@authenticated`).
    assert_eq!(
        (status, &parsed(&body)["data"]),
        (200, &json!({ "me": null }))
    );

    // APQ registration is off: the text comes back refused and is not stored.
    let other = "{ latestPosts(first: 3) { edges { cursor } } }";
    let (status, body) = post(
        &app,
        json!({ "query": other, "extensions": apq(&sha256_hex(other)) }),
        &[],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&parsed(&body)), Some("QUERY_NOT_IN_SAFELIST"));
    let (status, _) = post(&app, json!({ "extensions": apq(&sha256_hex(other)) }), &[]).await;
    assert_eq!(status, 404);

    // Listed operations run, by id or as their exact text.
    let (status, _) = post(
        &app,
        json!({ "documentId": sha256_hex(LATEST), "variables": { "n": 1 } }),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &app,
        json!({ "query": LATEST, "variables": { "n": 1 } }),
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rewritten_manifest_is_reloaded_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    write_manifest(&path, &[("Latest", "query", LATEST)]);
    let (data, manifest) = (dir.path().display().to_string(), path.display().to_string());
    let server = start(
        &["serve", "--manifest", &manifest, "--safelist"],
        &[("GANTRY_DATA_DIR", data.as_str())],
    )
    .await;
    let url = format!("http://{}/graphql", server.address);
    let by_id = async |body: &str| {
        reqwest::Client::new()
            .post(&url)
            .json(&json!({ "documentId": sha256_hex(body) }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let me = "query Me { me { id } }";
    assert_eq!(by_id(me).await, 404);

    std::fs::write(&path, "{ not a manifest").unwrap();
    server
        .wait_for_log("the manifest did not load; keeping the previous one")
        .await;
    assert_eq!(
        by_id(LATEST).await,
        200,
        "a broken file keeps the previous manifest"
    );

    write_manifest(&path, &[("Latest", "query", LATEST), ("Me", "query", me)]);
    eventually(
        "the new manifest is loaded",
        Duration::from_secs(10),
        async || (by_id(me).await == 200).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_bad_manifest_or_a_safelist_without_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    std::fs::write(
        &path,
        r#"{"format":"something-else","version":1,"operations":[]}"#,
    )
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let common = settings(data_dir.path(), &url, &[]);
    let args = ServeArgs {
        listen: None,
        common: common.clone(),
        gateway: with_manifest(&path, false),
    };
    let error = gantry::commands::serve::build(&common, &args)
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("something-else"), "{error:#}");
}

#[tokio::test]
async fn gantry_manifest_prints_a_manifest_the_gateway_serves() {
    let operations = tempfile::tempdir().unwrap();
    std::fs::write(
        operations.path().join("latest.graphql"),
        "query Latest($n: Int) {\n  latestPosts(first: $n) { ...Page }\n}\n",
    )
    .unwrap();
    std::fs::write(
        operations.path().join("fragments.graphql"),
        "fragment Page on PostConnection { edges { node { body } } }\n",
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["manifest", &operations.path().display().to_string()])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["format"], "apollo-persisted-query-manifest");
    assert_eq!(manifest["operations"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["operations"][0]["name"], "Latest");
    assert_eq!(manifest["operations"][0]["type"], "query");
    let id = manifest["operations"][0]["id"].as_str().unwrap().to_owned();

    let path = operations.path().join("manifest.json");
    std::fs::write(&path, &output.stdout).unwrap();
    let app = serve(with_manifest(&path, true)).await;
    let (status, body) = post(
        &app,
        json!({ "documentId": id, "variables": { "n": 1 } }),
        &[],
    )
    .await;
    assert_eq!(
        (status, parsed(&body)),
        (200, json!({ "data": { "latestPosts": { "edges": [] } } }))
    );

    std::fs::write(operations.path().join("anon.graphql"), "{ me { id } }").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["manifest", &operations.path().display().to_string()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("anon.graphql"));
}

fn redis_options() -> GatewayOptions {
    GatewayOptions {
        redis: RedisArgs {
            redis_url: Some(
                std::env::var("GANTRY_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            redis_prefix: format!("test-{}:", uuid::Uuid::now_v7()),
            redis_timeout_ms: 2000,
        },
        ..GatewayOptions::default()
    }
}

#[tokio::test]
async fn an_apq_registration_on_one_gateway_serves_another_through_redis() {
    let options = redis_options();
    let first = serve(options.clone()).await;
    let second = serve(options.clone()).await;
    let hash = sha256_hex(LATEST);

    let (_, body) = post(&second, json!({ "extensions": apq(&hash) }), &[]).await;
    assert_eq!(body, NOT_FOUND_BODY);
    let (status, _) = post(
        &first,
        json!({ "query": LATEST, "variables": { "n": 1 }, "extensions": apq(&hash) }),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = get(
        &second,
        &[
            ("variables", json!({ "n": 1 }).to_string()),
            ("extensions", apq(&hash).to_string()),
        ],
    )
    .await;
    assert_eq!(
        (status, parsed(&body)),
        (200, json!({ "data": { "latestPosts": { "edges": [] } } })),
        "{body}"
    );

    // A gateway started later (a restart) finds the registration too.
    first.stop().await;
    let restarted = serve(options).await;
    let (status, body) = post(
        &restarted,
        json!({ "extensions": apq(&hash), "variables": { "n": 1 } }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(parsed(&body)["data"].is_object(), "{body}");
}
