//! Progressive override through the real binary: a `new` subgraph takes fields over from
//! an `old` one with `@override(from: "old", label: …)`; which subgraph answered is what
//! the client reads in each field.

use async_graphql::Object;
use gantry_gateway::supergraph::{SubgraphSdl, compose_supergraph_sdl};
use serde_json::{Value, json};

use crate::edge::{key_file, toy_subgraph};
use crate::helpers::{Process, run, start};

/// Every field answers with the subgraph's name.
struct Answering(&'static str);

#[Object(name = "Query")]
impl Answering {
    async fn always(&self) -> &str {
        self.0
    }
    async fn never(&self) -> &str {
        self.0
    }
    async fn beta(&self) -> &str {
        self.0
    }
}

const OLD_SDL: &str = r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@shareable"])
type Query {
  always: String!
  never: String!
  beta: String!
}
"#;

fn new_sdl(labels: [&str; 3]) -> String {
    let [always, never, beta] = labels;
    format!(
        r#"
extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@override"])
type Query {{
  always: String! @override(from: "old", label: "{always}")
  never: String! @override(from: "old", label: "{never}")
  beta: String! @override(from: "old", label: "{beta}")
}}
"#
    )
}

/// A supergraph file of the two toy subgraphs, served; with `labels` on the new one's
/// fields.
async fn supergraph(dir: &std::path::Path, labels: [&str; 3]) -> String {
    let old = toy_subgraph(Answering("old")).await;
    let new = toy_subgraph(Answering("new")).await;
    let sdl = compose_supergraph_sdl(&[
        SubgraphSdl {
            name: "old".into(),
            url: old,
            sdl: OLD_SDL.into(),
        },
        SubgraphSdl {
            name: "new".into(),
            url: new,
            sdl: new_sdl(labels),
        },
    ])
    .unwrap();
    let file = dir.join("supergraph.graphql");
    std::fs::write(&file, sdl).unwrap();
    file.display().to_string()
}

async fn ask(gantry: &Process, labels: Option<&str>) -> Value {
    let request = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .json(&json!({ "query": "{ always never beta }" }));
    let request = match labels {
        Some(labels) => request.header("x-override-labels", labels),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn percentage_labels_and_labels_from_a_header_choose_the_subgraph_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = supergraph(dir.path(), ["percent(100)", "percent(0)", "beta"]).await;
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let gantry = start(
        &[
            "gateway",
            "--supergraph",
            &file,
            "--override-labels-header",
            "x-override-labels",
        ],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await;

    // Twice each, in turn: a plan made for one label set is never used for another.
    let mut answers = Vec::new();
    for labels in [None, Some("beta"), None, Some("gamma, beta"), Some("gamma")] {
        answers.push(ask(&gantry, labels).await);
    }

    let answer = |beta: &str| json!({ "data": { "always": "new", "never": "old", "beta": beta } });
    assert_eq!(
        answers,
        vec![
            answer("old"),
            answer("new"),
            answer("old"),
            answer("new"),
            answer("old")
        ]
    );
}

#[tokio::test]
async fn without_the_header_setting_clients_cannot_activate_labels() {
    let dir = tempfile::tempdir().unwrap();
    let file = supergraph(dir.path(), ["percent(100)", "percent(0)", "beta"]).await;
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let gantry = start(
        &["gateway", "--supergraph", &file],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await;

    let answer = ask(&gantry, Some("beta")).await;

    assert_eq!(
        answer,
        json!({ "data": { "always": "new", "never": "old", "beta": "old" } })
    );
}

#[tokio::test]
async fn a_supergraph_with_a_percentage_out_of_range_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = supergraph(dir.path(), ["percent(100)", "percent(0)", "percent(150)"]).await;
    let key = key_file(dir.path());

    let output = run(
        &["gateway", "--supergraph", &file],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("percent(150)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
