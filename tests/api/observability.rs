//! What an operator sees of the real binary: `/metrics` (request histograms by operation,
//! client and status; plan and validation cache lookups; per-subgraph fetches; the
//! subgraphs' own requests), the access log on stderr, the request id and trace context a
//! gateway hands its subgraphs, `/metrics` on a listener of its own, and quiet `/ready`
//! probes while a dependency is down.

use serde_json::{Value, json};

use crate::helpers::{Backend, Process, REGISTER, TestDatabase, free_port, fresh_database, start};

/// Latest posts with their authors: the posts subgraph, then the users subgraph.
const LATEST: &str = "query Latest($n: Int) { latestPosts(first: $n) { edges { node { body author { username } } } } }";

async fn metrics(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels, as rendered), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// POSTs `query` with `headers`, named `Latest` when it is [`LATEST`] (as clients name
/// their operations); the response body.
async fn post(
    address: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Value {
    let name = query.starts_with("query Latest").then_some("Latest");
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/graphql"))
        .json(&json!({ "query": query, "variables": variables, "operationName": name }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(body["errors"], Value::Null, "{query}: {body}");
    body
}

/// Registers alice and has her post once, so reading posts with authors asks both
/// subgraphs.
async fn alice_posts(address: &str) {
    let input = json!({ "input": {
        "username": "alice",
        "email": "alice@example.com",
        "password": "correct horse battery",
        "displayName": "Alice",
    }});
    let registered = post(address, REGISTER, input, None, &[]).await;
    let token = registered["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        address,
        "mutation { createPost(input: { body: \"hello\" }) { id } }",
        json!({}),
        Some(&token),
        &[],
    )
    .await;
}

/// The JSON log lines of `process` that `keep` accepts.
fn log_lines(process: &Process, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    process
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| keep(line))
        .collect()
}

/// The access log lines of `process` for the request with id `request_id`.
fn access_lines(process: &Process, request_id: &str) -> Vec<Value> {
    log_lines(process, |line| {
        line["target"] == "gantry::access" && line["fields"]["request_id"] == request_id
    })
}

/// `gantry subgraph users`, `gantry subgraph posts` and a `gantry gateway` in front of them.
struct Stack {
    users: Process,
    posts: Process,
    gateway: Process,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

async fn stack() -> Stack {
    stack_with(&[]).await
}

/// [`stack`], each process with `extra` in its environment.
async fn stack_with(extra: &[(&str, &str)]) -> Stack {
    let data_dir = tempfile::tempdir().unwrap();
    let database = fresh_database(Backend::Postgres, data_dir.path()).await;
    let data = data_dir.path().display().to_string();
    let mut env = vec![
        ("GANTRY_DATA_DIR", data.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    env.extend_from_slice(extra);
    let users = start(&["subgraph", "users"], &env).await;
    let posts = start(&["subgraph", "posts"], &env).await;
    let users_url = format!("users=http://{}/graphql", users.address);
    let posts_url = format!("posts=http://{}/graphql", posts.address);
    let gateway = start(
        &[
            "gateway",
            "--subgraph",
            &users_url,
            "--subgraph",
            &posts_url,
        ],
        &env,
    )
    .await;
    Stack {
        users,
        posts,
        gateway,
        _data_dir: data_dir,
        _database: database,
    }
}

#[tokio::test]
async fn metrics_count_requests_by_operation_client_and_status_and_the_plan_cache_hits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let serve = start(&["serve"], &[("GANTRY_DATA_DIR", data.as_str())]).await;
    let web = [("apollographql-client-name", "web")];
    // The same text with other variables: prepared once, then a validation cache hit.
    for n in 1..=3 {
        post(&serve.address, LATEST, json!({ "n": n }), None, &web).await;
    }
    // Another text of the same operation: prepared again, but its plan is cached.
    let spaced = LATEST.replace("{ edges", "{  edges");
    post(&serve.address, &spaced, json!({ "n": 4 }), None, &web).await;
    // More client names than the label cap: the ones past it are counted as `other`.
    for i in 0..25 {
        let client = format!("client-{i}");
        let headers = [("apollographql-client-name", client.as_str())];
        post(&serve.address, LATEST, json!({ "n": 9 }), None, &headers).await;
    }

    // Unnamed in the request, named in the document: counted under the document's name.
    let unnamed = reqwest::Client::new()
        .post(format!("http://{}/graphql", serve.address))
        .json(&json!({ "query": "query Newest { latestPosts(first: 1) { edges { cursor } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unnamed.status(), 200);
    let text = metrics(&serve.address).await;
    let web_ok = "operation=\"Latest\",client=\"web\",status=\"200\"";
    assert_eq!(
        sample(&text, &format!("gantry_requests_total{{{web_ok}}}")),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("gantry_request_duration_seconds_count{{{web_ok}}}")
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gantry_request_duration_seconds_bucket{{{web_ok},le=\"+Inf\"}} 4"
        )),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "gantry_requests_total{operation=\"Latest\",client=\"other\",status=\"200\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(!text.contains("client=\"client-24\""), "{text}");
    assert_eq!(
        sample(&text, "gantry_cache_hits_total{cache=\"plan\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "gantry_cache_hits_total{cache=\"validation\"}").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "gantry_cache_hit_ratio{cache=\"plan\"}").is_some_and(|r| r > 0.0),
        "{text}"
    );
    assert!(
        sample(&text, "gantry_cache_misses_total{cache=\"validation\"}").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        text.contains("gantry_requests_total{operation=\"Newest\",client=\"\",status=\"200\"} 1"),
        "{text}"
    );
    assert_eq!(sample(&text, "gantry_database_up"), None, "no probe yet");
    let ready = reqwest::get(format!("http://{}/ready", serve.address))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        sample(&metrics(&serve.address).await, "gantry_database_up"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_request_id_and_trace_context_reach_the_subgraphs_and_their_logs_and_metrics() {
    let stack = stack().await;
    alice_posts(&stack.gateway.address).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    post(
        &stack.gateway.address,
        LATEST,
        json!({ "n": 5 }),
        None,
        &[
            ("x-request-id", "observe-1"),
            ("traceparent", &traceparent),
            ("apollographql-client-name", "ios"),
        ],
    )
    .await;

    // The gateway's access log: one line at info with what an operator looks for.
    let gateway_lines = access_lines(&stack.gateway, "observe-1");
    assert_eq!(gateway_lines.len(), 1, "{gateway_lines:#?}");
    let line = &gateway_lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["method"], "POST");
    assert_eq!(line["fields"]["path"], "/graphql");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["fields"]["operation"], "Latest");
    assert_eq!(line["fields"]["client"], "ios");
    assert!(line["fields"]["duration_ms"].as_f64().is_some(), "{line}");
    assert_eq!(line["span"]["trace_id"], trace);

    // Each subgraph got the same request id and trace, and logged them.
    for subgraph in [&stack.users, &stack.posts] {
        let lines = access_lines(subgraph, "observe-1");
        assert!(!lines.is_empty(), "{:#?}", subgraph.logs.lock().unwrap());
        assert!(lines.iter().all(|line| line["span"]["trace_id"] == trace));
    }

    // Without a trace context from the client, the gateway starts one and hands it on.
    post(
        &stack.gateway.address,
        LATEST,
        json!({ "n": 5 }),
        None,
        &[("x-request-id", "observe-2")],
    )
    .await;
    let started = access_lines(&stack.gateway, "observe-2")[0]["span"]["trace_id"].clone();
    assert_eq!(started.as_str().map(str::len), Some(32), "{started}");
    let users_lines = access_lines(&stack.users, "observe-2");
    assert!(!users_lines.is_empty());
    assert!(
        users_lines
            .iter()
            .all(|line| line["span"]["trace_id"] == started)
    );

    // Per-subgraph fetches at the gateway; the subgraphs' own requests at theirs.
    let text = metrics(&stack.gateway.address).await;
    for subgraph in ["users", "posts"] {
        assert!(
            sample(
                &text,
                &format!(
                    "gantry_subgraph_request_duration_seconds_count{{subgraph=\"{subgraph}\",outcome=\"ok\"}}"
                )
            )
            .is_some_and(|n| n >= 2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("gantry_subgraph_requests_in_flight{{subgraph=\"{subgraph}\"}}")
            ),
            Some(0.0),
            "{text}"
        );
    }
    let posts_metrics = metrics(&stack.posts.address).await;
    assert!(
        posts_metrics.contains("gantry_requests_total{operation=\"\",client=\"\",status=\"200\"}"),
        "{posts_metrics}"
    );
    assert!(
        posts_metrics.contains("gantry_sql_statements_total "),
        "{posts_metrics}"
    );
}

#[tokio::test]
async fn a_failing_subgraph_is_counted_and_ready_503_logs_one_warning_and_no_error() {
    let mut stack = stack().await;
    alice_posts(&stack.gateway.address).await;
    stack.users.child.kill().await.unwrap();

    // The posts are still served, without their authors; the failed fetch is counted.
    let response: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", stack.gateway.address))
        .json(&json!({ "query": LATEST, "variables": { "n": 5 }, "operationName": "Latest" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "SUBGRAPH_ERROR"
    );
    let text = metrics(&stack.gateway.address).await;
    assert!(
        text.lines()
            .any(|line| line.starts_with("gantry_subgraph_errors_total{subgraph=\"users\",kind=")),
        "{text}"
    );

    for _ in 0..3 {
        let ready = reqwest::get(format!("http://{}/ready", stack.gateway.address))
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
    }
    let errors = log_lines(&stack.gateway, |line| line["level"] == "ERROR");
    assert!(errors.is_empty(), "{errors:#?}");
    let warnings = log_lines(&stack.gateway, |line| {
        line["level"] == "WARN" && line["fields"]["message"] == "not ready"
    });
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let serve = start(
        &["serve"],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_METRICS_LISTEN", metrics_listen.as_str()),
        ],
    )
    .await;
    post(&serve.address, LATEST, json!({ "n": 1 }), None, &[]).await;

    let main = reqwest::get(format!("http://{}/metrics", serve.address))
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let text = metrics(&metrics_listen).await;
    assert!(
        text.contains("gantry_requests_total{operation=\"Latest\",client=\"\",status=\"200\"} 1"),
        "{text}"
    );
}

/// Traces, when `gantry` is built with `--features otel` (`scripts/test` runs this test so).
#[cfg(feature = "otel")]
mod otel {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::State;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};

    use super::{LATEST, alice_posts, stack_with};
    use crate::helpers::eventually;

    /// One exported span: its service, name, trace id, id and parent id.
    #[derive(Debug, Clone)]
    struct Span {
        service: String,
        name: String,
        trace: String,
        id: String,
        parent: String,
    }

    /// A local OTLP/HTTP receiver (JSON encoding): every span it was sent.
    async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), spans)
    }

    async fn receive(
        State(spans): State<Arc<Mutex<Vec<Span>>>>,
        Json(export): Json<Value>,
    ) -> Json<Value> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut received = spans.lock().unwrap();
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| text(&a["value"]["stringValue"]))
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    received.push(Span {
                        service: service.clone(),
                        name: text(&span["name"]),
                        trace: text(&span["traceId"]),
                        id: text(&span["spanId"]),
                        parent: text(&span["parentSpanId"]),
                    });
                }
            }
        }
        Json(json!({}))
    }

    /// The trace as an indented tree, each span under its parent (`service: name`), for
    /// the test's output (`--no-capture`).
    fn tree(spans: &[Span]) -> String {
        fn walk(spans: &[Span], parent: &str, depth: usize, out: &mut String) {
            for span in spans.iter().filter(|s| s.parent == parent) {
                out.push_str(&format!(
                    "{}{}: {}\n",
                    "  ".repeat(depth),
                    span.service,
                    span.name
                ));
                walk(spans, &span.id, depth + 1, out);
            }
        }
        let mut out = String::new();
        // Roots: spans whose parent is not among the spans (the client's traceparent).
        let roots: Vec<&str> = spans
            .iter()
            .filter(|s| !spans.iter().any(|p| p.id == s.parent))
            .map(|s| s.parent.as_str())
            .collect();
        let mut seen = Vec::new();
        for root in roots {
            if !seen.contains(&root) {
                seen.push(root);
                walk(spans, root, 0, &mut out);
            }
        }
        out
    }

    #[tokio::test]
    async fn one_requests_spans_from_the_three_processes_share_its_trace() {
        let (endpoint, spans) = receiver().await;
        let stack = stack_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ])
        .await;
        alice_posts(&stack.gateway.address).await;
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
        super::post(
            &stack.gateway.address,
            LATEST,
            json!({ "n": 5 }),
            None,
            &[("traceparent", &traceparent)],
        )
        .await;

        let of_trace = eventually(
            "spans of the request from the gateway and both subgraphs",
            Duration::from_secs(30),
            async || {
                let of_trace: Vec<Span> = spans
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|span| span.trace == trace)
                    .cloned()
                    .collect();
                let from = |service: &str| of_trace.iter().any(|s| s.service == service);
                (from("gantry-gateway") && from("gantry-users") && from("gantry-posts"))
                    .then_some(of_trace)
            },
        )
        .await;

        println!("{}", tree(&of_trace));
        let gateway: Vec<&Span> = of_trace
            .iter()
            .filter(|s| s.service == "gantry-gateway")
            .collect();
        let named = |name: &str| gateway.iter().any(|s| s.name == name);
        for stage in [
            "request",
            "validate",
            "plan",
            "execute",
            "shape",
            "subgraph_fetch",
        ] {
            assert!(named(stage), "no {stage} span: {gateway:#?}");
        }
        // Each subgraph's request span is a child of one of the gateway's fetch spans.
        let fetches: Vec<&str> = gateway
            .iter()
            .filter(|s| s.name == "subgraph_fetch")
            .map(|s| s.id.as_str())
            .collect();
        for service in ["gantry-users", "gantry-posts"] {
            let requests: Vec<&Span> = of_trace
                .iter()
                .filter(|s| s.service == service && s.name == "request")
                .collect();
            assert!(!requests.is_empty(), "{of_trace:#?}");
            assert!(
                requests
                    .iter()
                    .all(|s| fetches.contains(&s.parent.as_str())),
                "{of_trace:#?}"
            );
        }
    }
}
