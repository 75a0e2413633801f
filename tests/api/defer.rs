//! `@defer` against the real `gantry serve` binary: Apollo Client reading the primary part
//! first and the deferred author after it, GraphiQL reading the parts, and a persisted query
//! with `@defer` answered in parts by hash, over POST and GET.

use gantry_gateway::persisted::sha256_hex;
use serde_json::{Value, json};

use crate::browser::node;
use crate::helpers::{Process, start};

const APOLLO_ACCEPT: &str = "multipart/mixed;deferSpec=20220824,application/json";

/// `gantry serve` with one post by `writer`.
async fn serve_with_a_post() -> (tempfile::TempDir, Process) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let serve = start(&["serve"], &[("GANTRY_DATA_DIR", data.as_str())]).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/graphql", serve.address);
    let registered: Value = client
        .post(&url)
        .json(&json!({
            "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            "variables": { "i": { "username": "writer", "email": "writer@example.com",
                                  "password": "velvet comet harbor", "displayName": "Writer" } }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("registered: {registered}"))
        .to_owned();
    let created: Value = client
        .post(&url)
        .bearer_auth(token)
        .json(&json!({ "query": "mutation { createPost(input: { body: \"deferred hello\" }) { id } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["errors"], Value::Null, "{created}");
    (dir, serve)
}

/// The JSON payloads of a whole `multipart/mixed` body with the `graphql` boundary.
fn parts(body: &str) -> Vec<Value> {
    body.split("\r\n--graphql")
        .filter_map(|part| part.split_once("\r\n\r\n"))
        .map(|(_, json)| serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON: {json}")))
        .collect()
}

const LATEST: &str = "query Latest { latestPosts(first: 1) { edges { node { body ... @defer(label: \"author\") { author { username followerCount } } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_client_gets_the_primary_data_first_and_the_deferred_author_after_it() {
    let (_dir, serve) = serve_with_a_post().await;
    let url = format!("http://{}/graphql", serve.address);

    let (ok, output) = node("defer.mjs", &[&url, LATEST, "writer"]).await;
    assert!(ok, "the Apollo Client run failed:\n{output}");
    let results: Vec<Value> = serde_json::from_str(output.trim()).unwrap();
    assert!(results.len() >= 2, "{output}");
    assert_eq!(
        results[0]["data"],
        json!({"latestPosts": {"edges": [{"node": {"body": "deferred hello"}}]}})
    );
    assert_eq!(
        results.last().unwrap()["data"],
        json!({"latestPosts": {"edges": [{"node": {"body": "deferred hello",
            "author": {"username": "writer", "followerCount": 0}}}]}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_query_with_defer_is_answered_in_parts_by_hash_over_post_and_get() {
    let (_dir, serve) = serve_with_a_post().await;
    let url = format!("http://{}/graphql", serve.address);
    let client = reqwest::Client::new();
    let hash = sha256_hex(LATEST);
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let expected = vec![
        json!({"data": {"latestPosts": {"edges": [{"node": {"body": "deferred hello"}}]}}, "hasNext": true}),
        json!({"incremental": [{"data": {"author": {"username": "writer", "followerCount": 0}},
            "path": ["latestPosts", "edges", 0, "node"], "label": "author"}], "hasNext": false}),
    ];

    // Registered with its text, answered in parts.
    let registered = client
        .post(&url)
        .header("accept", APOLLO_ACCEPT)
        .json(&json!({ "query": LATEST, "extensions": extensions }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.headers()["content-type"],
        "multipart/mixed; boundary=\"graphql\"; deferSpec=20220824"
    );
    assert_eq!(parts(&registered.text().await.unwrap()), expected);

    // By hash alone, over POST and over GET.
    let by_hash = client
        .post(&url)
        .header("accept", APOLLO_ACCEPT)
        .json(&json!({ "extensions": extensions }))
        .send()
        .await
        .unwrap();
    assert_eq!(parts(&by_hash.text().await.unwrap()), expected);
    let by_get = client
        .get(&url)
        .query(&[("extensions", extensions.to_string())])
        .header("accept", APOLLO_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(by_get.status(), 200);
    assert_eq!(parts(&by_get.text().await.unwrap()), expected);

    // A client without an incremental format gets the whole answer, by hash too.
    let whole: Value = client
        .get(&url)
        .query(&[("extensions", extensions.to_string())])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        whole,
        json!({"data": {"latestPosts": {"edges": [{"node": {"body": "deferred hello",
            "author": {"username": "writer", "followerCount": 0}}}]}}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_deferred_query_and_shows_the_deferred_part() {
    let (_dir, serve) = serve_with_a_post().await;
    let url = format!("http://{}/graphql", serve.address);

    let (ok, output) = node(
        "playground.mjs",
        &[&url, "--query", LATEST, "--expect", "followerCount"],
    )
    .await;
    assert!(ok, "the playground check failed:\n{output}");
    let summary: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        summary["result"]["data"]["latestPosts"]["edges"][0]["node"],
        json!({"body": "deferred hello", "author": {"username": "writer", "followerCount": 0}})
    );
    let types = summary["responseTypes"].as_array().unwrap();
    assert!(
        types.iter().any(|media| media
            .as_str()
            .is_some_and(|media| media.starts_with("multipart/mixed"))),
        "the playground was answered in parts: {types:?}"
    );
}
