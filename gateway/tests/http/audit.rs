//! The graphql-http audit suite (GraphQL-over-HTTP conformance) passes in full.

use crate::support::{TestServer, run_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_http_audit_passes_in_full() {
    let server = TestServer::spawn().await;

    let (success, output) = run_node("audit.mjs", &[&server.url("/graphql")]).await;

    assert!(success, "graphql-http audit did not pass:\n{output}");
    assert!(
        output.contains(" 0 warn, 0 error"),
        "unexpected audit summary:\n{output}"
    );
}
