//! The product's HTTP face as tools see it: the `graphql-http` audit and the GraphiQL
//! playground in headless Chromium, both against `gantry serve`'s real app.

use std::sync::Arc;

use gantry::cli::ServeArgs;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, fresh_database, settings};

async fn serve() -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(Backend::Sqlite, data_dir.path()).await;
    let common = settings(data_dir.path(), &url, &[]);
    let app = gantry::commands::serve::build(&common, &ServeArgs::default())
        .await
        .unwrap();
    TestApp::serve(app.router, Some(app.tasks), data_dir, url).await
}

/// Runs `node tests/node/SCRIPT ARGS`; scripts/test installs its packages.
pub(crate) async fn node(script: &str, args: &[&str]) -> (bool, String) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules").exists(),
        "tests/node/node_modules is missing: run `npm ci` there (scripts/test does)"
    );
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run node: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_http_audit_passes_in_full_against_the_gateway() {
    let app = serve().await;
    let (ok, output) = node("audit.mjs", &[&app.url("/graphql")]).await;
    assert!(ok, "the graphql-http audit failed:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_query_without_leaving_the_gateway() {
    let app = serve().await;
    let author = app.register("playground").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = app
        .graphql(
            "mutation { createPost(input: { body: \"seen in the playground\" }) { id } }",
            serde_json::json!({}),
            Some(&author),
        )
        .await;
    assert_eq!(created["errors"], Value::Null);

    let (ok, output) = node(
        "playground.mjs",
        &[
            &app.url("/graphql"),
            "--query",
            "{ latestPosts(first: 1) { edges { node { body author { username } } } } }",
            "--expect",
            "seen in the playground",
        ],
    )
    .await;
    assert!(ok, "the playground check failed:\n{output}");
    let summary: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        summary["result"]["data"]["latestPosts"]["edges"][0]["node"],
        serde_json::json!({ "body": "seen in the playground", "author": { "username": "playground" } })
    );
    assert_eq!(summary["foreignRequests"], serde_json::json!([]));
    assert!(
        summary["initialQuery"]
            .as_str()
            .unwrap()
            .contains("latestPosts")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_subscription_over_a_websocket_and_shows_its_events() {
    let app = serve().await;
    let author = app.register("livewire").await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = app
        .graphql(
            "mutation { createPost(input: { body: \"watched live\" }) { id } }",
            serde_json::json!({}),
            Some(&author),
        )
        .await;
    let post = created["data"]["createPost"]["id"].as_str().unwrap();
    let subscription = format!(
        "subscription {{ commentAdded(postId: \"{post}\") {{ body author {{ username }} }} }}"
    );
    let comment = serde_json::json!({
        "query": format!(
            "mutation {{ addComment(postId: \"{post}\", body: \"live in the playground\") {{ id }} }}"
        )
    });

    let (ok, output) = node(
        "playground.mjs",
        &[
            &app.url("/graphql"),
            "--query",
            &subscription,
            "--expect",
            "live in the playground",
            "--trigger",
            &comment.to_string(),
            "--trigger-token",
            &author,
        ],
    )
    .await;
    assert!(ok, "the playground check failed:\n{output}");
    let summary: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        summary["result"]["data"]["commentAdded"],
        serde_json::json!({ "body": "live in the playground", "author": { "username": "livewire" } })
    );
    let origin = app.url("/graphql").replace("http://", "ws://");
    assert_eq!(summary["websockets"][0], Value::String(origin));
    assert_eq!(summary["foreignRequests"], serde_json::json!([]));
    assert_eq!(summary["problems"], serde_json::json!([]));
    assert!(
        summary["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|trigger| trigger["status"] == 200 && trigger["body"]["errors"].is_null()),
        "{}",
        summary["triggers"]
    );
}
