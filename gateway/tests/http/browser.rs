//! The playground in a real (headless) Chromium: loads with no request leaving the
//! gateway's origin, and runs an operation from GraphiQL's editor. Chromium is
//! `CHROMIUM_PATH`, else the first usual name on `PATH` (`tests/node/playground.mjs` looks).

use serde_json::Value;

use crate::support::{TestServer, run_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_an_operation_without_leaving_the_gateway() {
    let server = TestServer::spawn().await;

    let (success, output) = run_node(
        "playground.mjs",
        &[
            &server.url("/graphql"),
            "--query",
            "{ hello }",
            "--expect",
            r#""hello": "world""#,
        ],
    )
    .await;

    assert!(success, "the playground check failed:\n{output}");
    let summary: Value = serde_json::from_str(&output).expect("a JSON summary");
    assert_eq!(
        summary["result"],
        serde_json::json!({"data": {"hello": "world"}})
    );
    assert_eq!(summary["foreignRequests"], serde_json::json!([]));
    assert!(
        summary["initialQuery"]
            .as_str()
            .is_some_and(|query| query.contains("latestPosts")),
        "the editor should open with the example query: {summary}"
    );
    let requests = summary["requests"].to_string();
    for path in [
        "/playground/graphiql.js",
        "/playground/graphiql.css",
        "POST ",
    ] {
        assert!(requests.contains(path), "no request for {path}: {requests}");
    }
}
