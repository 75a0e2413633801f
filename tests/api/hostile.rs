//! Hostile documents against the real binary: each attack that crashed the process, grew
//! its memory by gigabytes or held its CPU is refused with `400`,
//! `GRAPHQL_VALIDATION_FAILED` and the limit it broke; the process goes on answering
//! ordinary operations and `/health` (also while such documents keep coming), and its
//! memory stays bounded.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Process, start};

/// `gantry serve` as a process with `flags`, on a fresh SQLite database in its own data dir.
async fn serve_process(flags: &[&str], env: &[(&str, &str)]) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut args = vec!["serve"];
    args.extend_from_slice(flags);
    let mut env = env.to_vec();
    env.push(("GANTRY_DATA_DIR", data.as_str()));
    let process = start(&args, &env).await;
    (process, dir)
}

async fn post(client: &reqwest::Client, address: &str, query: &str) -> (u16, Value) {
    let response = client
        .post(format!("http://{address}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The process's resident memory, from `/proc/<pid>/status`, in bytes.
fn resident_bytes(process: &Process) -> u64 {
    let pid = process.child.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The refusal a limit gives: `400`, one error, its code and `extensions.limit.name`.
#[track_caller]
fn assert_refused(status: u16, body: &Value, limit: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body.get("data"), None, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(
        errors[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    assert_eq!(errors[0]["extensions"]["limit"]["name"], limit, "{body}");
}

const ORDINARY: &str = "{ latestPosts(first: 1) { edges { node { id body } } } }";

/// An ordinary operation still answers.
async fn assert_answers(client: &reqwest::Client, address: &str) {
    let (status, body) = post(client, address, ORDINARY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["latestPosts"]["edges"], json!([]), "{body}");
}

/// 400 fragments, each spreading the next through `followers` (31 KB).
fn followers_fragment_chain() -> String {
    let mut text =
        String::from("{ latestPosts(first: 1) { edges { node { author { ...F0 } } } } }");
    for i in 0..400 {
        text.push_str(&format!(
            "\nfragment F{i} on User {{ followers(first: 1) {{ edges {{ node {{ ...F{} }} }} }} }}",
            i + 1
        ));
    }
    text.push_str("\nfragment F400 on User { id }");
    text
}

/// 1,000 `__Type` fragments chained through `ofType`.
fn of_type_fragment_chain() -> String {
    let mut text = String::from("{ __type(name: \"User\") { ...T0 } }");
    for i in 0..1000 {
        text.push_str(&format!(
            "\nfragment T{i} on __Type {{ ofType {{ ...T{} }} }}",
            i + 1
        ));
    }
    text.push_str("\nfragment T1000 on __Type { name }");
    text
}

/// 2,000 flat fragments, each selecting `__typename` and spreading the next.
fn flat_fragment_chain() -> String {
    let mut text = String::from("{ ...F0 }");
    for i in 0..2000 {
        text.push_str(&format!(
            "\nfragment F{i} on Query {{ __typename ...F{} }}",
            i + 1
        ));
    }
    text.push_str("\nfragment F2000 on Query { __typename }");
    text
}

#[tokio::test]
async fn documents_that_overflowed_the_stack_are_refused_and_the_process_survives() {
    let (process, _dir) = serve_process(&[], &[]).await;
    let client = reqwest::Client::new();
    let address = process.address.as_str();
    let followers = followers_fragment_chain();
    assert!(followers.len() > 30_000, "{}", followers.len());

    let (status, body) = post(&client, address, &followers).await;
    assert_refused(status, &body, "depth");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!({"name": "depth", "max": 20, "actual": 1205})
    );
    let (status, body) = post(&client, address, &of_type_fragment_chain()).await;
    assert_refused(status, &body, "depth");
    let (status, body) = post(&client, address, &flat_fragment_chain()).await;
    assert_refused(status, &body, "tokens");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!({"name": "tokens", "max": 15000})
    );

    assert_answers(&client, address).await;
    assert!(resident_bytes(&process) < GIB);
}

/// `latestPosts(first: 100) → author → posts(first: 100) → …`, five levels (236 bytes).
fn nested_pages() -> String {
    let mut text = String::from("{latestPosts(first:100){edges{node{");
    for _ in 0..5 {
        text.push_str("author{posts(first:100){edges{node{");
    }
    text.push_str("id");
    text.push_str(&"}".repeat(4 * 5 + 4));
    text
}

/// Introspection fragments over `fields { type { … } }`, ten levels.
fn introspection_levels() -> String {
    let mut text = String::from("{ __schema { types { ...L0 } } }");
    for i in 0..10 {
        text.push_str(&format!(
            " fragment L{i} on __Type {{ fields {{ type {{ ...L{} }} }} }}",
            i + 1
        ));
    }
    text.push_str(" fragment L10 on __Type { name }");
    text
}

/// `fragment F<i> on Query { ...F<i+1> ...F<i+1> }`, thirty levels: 2^30 selections.
fn spread_explosion() -> String {
    let mut text = String::from("{ ...F0 }");
    for i in 0..30 {
        text.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    text.push_str(" fragment F30 on Query { __typename }");
    text
}

#[tokio::test]
async fn documents_that_grew_memory_by_gigabytes_are_refused_and_standard_introspection_passes() {
    let (process, _dir) = serve_process(&[], &[]).await;
    let client = reqwest::Client::new();
    let address = process.address.as_str();
    let nested = nested_pages();
    assert!(nested.len() < 260, "{}", nested.len());

    let (status, body) = post(&client, address, &nested).await;
    assert_refused(status, &body, "depth");
    assert_eq!(body["errors"][0]["extensions"]["limit"]["actual"], 24);
    let (status, body) = post(&client, address, &introspection_levels()).await;
    assert_refused(status, &body, "introspectionDepth");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!({"name": "introspectionDepth", "max": 2, "actual": 10})
    );
    let (status, body) = post(&client, address, &spread_explosion()).await;
    assert_refused(status, &body, "selections");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!({"name": "selections", "max": 1000, "actual": 1_u64 << 30})
    );

    // What GraphiQL and graphql-codegen send is not refused.
    let (status, body) = post(&client, address, STANDARD_INTROSPECTION).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.get("errors"), None, "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    assert_answers(&client, address).await;
    assert!(resident_bytes(&process) < GIB);
}

/// `count` copies of `selection`, aliased `a<i>` when `alias` is given.
fn repeated(selection: &str, count: usize, alias: Option<&str>) -> String {
    let mut text = String::from("{");
    for i in 0..count {
        match alias {
            Some(alias) => text.push_str(&format!(" {alias}{i}: {selection}")),
            None => text.push_str(&format!(" {selection}")),
        }
    }
    text.push_str(" }");
    text
}

#[tokio::test]
async fn documents_that_held_the_cpu_are_refused_before_validation() {
    let (process, _dir) = serve_process(&[], &[]).await;
    let client = reqwest::Client::new();
    let address = process.address.as_str();
    let identical = repeated(
        "latestPosts(first: 1) { edges { node { id } } }",
        5000,
        None,
    );
    assert!(identical.len() > 240_000, "{}", identical.len());
    let aliases = repeated(
        "latestPosts(first: 100) { edges { node { id } } }",
        5000,
        Some("a"),
    );
    // One response key, conflicting arguments: every pair is a validation error.
    let mut conflicting = String::from("{");
    for i in 0..1000 {
        conflicting.push_str(&format!(
            " a: latestPosts(first: {}) {{ __typename }}",
            i % 100 + 1
        ));
    }
    conflicting.push_str(" }");

    let (status, body) = post(&client, address, &identical).await;
    assert_refused(status, &body, "tokens");
    let (status, body) = post(&client, address, &aliases).await;
    assert_refused(status, &body, "tokens");
    let (status, body) = post(&client, address, &conflicting).await;
    assert_refused(status, &body, "aliases");
    assert_eq!(body["errors"][0]["extensions"]["limit"]["actual"], 1000);

    assert_answers(&client, address).await;
    assert!(resident_bytes(&process) < GIB);
}

#[tokio::test]
async fn a_response_carries_at_most_the_configured_number_of_errors() {
    let (process, _dir) = serve_process(&[], &[]).await;
    let client = reqwest::Client::new();
    // 64 fields under one response key with conflicting arguments: 2,016 conflicts.
    let mut conflicting = String::from("{");
    for i in 0..64 {
        conflicting.push_str(&format!(
            " a: latestPosts(first: {}) {{ __typename }}",
            i + 1
        ));
    }
    conflicting.push_str(" }");

    let (_, body) = post(&client, &process.address, &conflicting).await;

    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 101, "{body}");
    assert!(
        errors[..100]
            .iter()
            .all(|e| e["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"),
        "{body}"
    );
    let last = &errors[100];
    assert_eq!(last["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(last["extensions"]["limit"]["name"], "errors");
    assert_eq!(last["extensions"]["limit"]["max"], 100);
    assert!(
        last["extensions"]["limit"]["actual"].as_u64() > Some(100),
        "{last}"
    );
}

/// A different 288 KB document each time, so none is answered from the cache.
fn large_hostile_document(seed: usize) -> String {
    let mut text = format!("query Q{seed} {{");
    while text.len() < 288 * 1024 {
        text.push_str(" latestPosts(first: 1) { edges { node { id } } }");
    }
    text.push_str(" }");
    text
}

#[tokio::test]
async fn health_and_ordinary_operations_answer_while_hostile_documents_keep_coming() {
    let (process, _dir) = serve_process(&[], &[]).await;
    let address = process.address.clone();
    let client = reqwest::Client::new();
    // Prepared once before the attack: afterwards it is a cache hit.
    assert_answers(&client, &address).await;

    let attackers: Vec<_> = (0..4)
        .map(|attacker| {
            let (client, address) = (client.clone(), address.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                for round in 0..15 {
                    let document = large_hostile_document(attacker * 100 + round);
                    let (status, body) = post(&client, &address, &document).await;
                    assert_refused(status, &body, "tokens");
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let probes = async {
        for probe in 0..10 {
            let health = client
                .get(format!("http://{address}/health"))
                .send()
                .await
                .unwrap();
            assert_eq!(health.status(), 200);
            assert_answers(&client, &address).await;
            let fresh =
                format!("query Probe{probe} {{ latestPosts(first: 2) {{ edges {{ cursor }} }} }}");
            let (status, body) = post(&client, &address, &fresh).await;
            assert_eq!(
                status, 200,
                "a new ordinary document is prepared too: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (refused, ()) = tokio::join!(futures::future::join_all(attackers), probes);

    assert!(refused.into_iter().all(|count| count.unwrap() == 15));
    assert!(resident_bytes(&process) < GIB);
}

/// The query GraphiQL and graphql-codegen send to learn the schema (graphql-js's
/// `getIntrospectionQuery` with every option, `ofType` nested nine deep).
const STANDARD_INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        description
        queryType { name kind } mutationType { name kind } subscriptionType { name kind }
        types { ...FullType }
        directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description specifiedByURL isOneOf
      fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
      inputFields(includeDeprecated: true) { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
    }
"#;

#[tokio::test]
async fn each_limit_follows_its_flag_or_environment_variable() {
    let (process, _dir) = serve_process(
        &["--max-depth", "3", "--max-root-fields", "1"],
        &[("GANTRY_MAX_ALIASES", "0")],
    )
    .await;
    let client = reqwest::Client::new();
    let address = process.address.as_str();

    let (status, body) = post(&client, address, ORDINARY).await;
    assert_refused(status, &body, "depth");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!({"name": "depth", "max": 3, "actual": 4})
    );
    let (status, body) = post(&client, address, "{ a: me { id } }").await;
    assert_refused(status, &body, "aliases");
    let (status, body) = post(
        &client,
        address,
        "{ me { id } latestPosts { pageInfo { hasNextPage } } }",
    )
    .await;
    assert_refused(status, &body, "rootFields");
    let (status, body) = post(
        &client,
        address,
        "{ latestPosts { pageInfo { hasNextPage } } }",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
