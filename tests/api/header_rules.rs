//! Header rules through the real binary, in the three-process shape: a gateway in front of
//! two subgraphs that answer with the headers they got.

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::edge::key_file;
use crate::helpers::{Process, start};

/// `name: value` of every header the subgraph's request carried, sorted.
fn seen(ctx: &Context<'_>) -> Vec<String> {
    let headers = ctx.data_unchecked::<HeaderMap>();
    let mut seen: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect();
    seen.sort();
    seen
}

struct Accounts;

#[Object(name = "Query")]
impl Accounts {
    async fn accounts_headers(&self, ctx: &Context<'_>) -> Vec<String> {
        seen(ctx)
    }
}

struct Orders;

#[Object(name = "Query")]
impl Orders {
    async fn orders_headers(&self, ctx: &Context<'_>) -> Vec<String> {
        seen(ctx)
    }
}

/// Serves a subgraph whose resolvers see the request's headers.
async fn echo_subgraph<Q: async_graphql::ObjectType + 'static>(query: Q) -> String {
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let router = axum::Router::new().route(
        "/graphql",
        axum::routing::post(
            move |headers: HeaderMap, request: async_graphql_axum::GraphQLRequest| {
                let schema = schema.clone();
                async move {
                    let request = request.into_inner().data(headers);
                    async_graphql_axum::GraphQLResponse::from(schema.execute(request).await)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/graphql")
}

async fn gateway(dir: &tempfile::TempDir, flags: &[&str]) -> Process {
    let accounts = format!("accounts={}", echo_subgraph(Accounts).await);
    let orders = format!("orders={}", echo_subgraph(Orders).await);
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let mut args = vec!["gateway", "--subgraph", &accounts, "--subgraph", &orders];
    args.extend_from_slice(flags);
    start(
        &args,
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await
}

/// Asks both subgraphs, as a web client with a few headers of its own, and returns what
/// each saw.
async fn headers_seen(gantry: &Process) -> (Vec<String>, Vec<String>) {
    let answer: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .header("apollographql-client-name", "web")
        .header("apollographql-client-version", "1.2.0")
        .header("x-feature-dark-mode", "on")
        .header("x-tenant", "acme")
        .header("cookie", "session=secret")
        .json(&json!({ "query": "{ accountsHeaders ordersHeaders }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errors"], Value::Null, "{answer}");
    let list = |field: &str| -> Vec<String> {
        serde_json::from_value(answer["data"][field].clone()).unwrap()
    };
    (list("accountsHeaders"), list("ordersHeaders"))
}

fn has(seen: &[String], header: &str) -> bool {
    seen.iter().any(|line| line == header)
}

fn has_name(seen: &[String], name: &str) -> bool {
    seen.iter()
        .any(|line| line.starts_with(&format!("{name}: ")))
}

#[tokio::test]
async fn client_name_and_version_reach_every_subgraph_and_nothing_else_of_the_clients_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &[]).await;

    let (accounts, orders) = headers_seen(&gantry).await;

    for seen in [&accounts, &orders] {
        assert!(has(seen, "apollographql-client-name: web"), "{seen:?}");
        assert!(has(seen, "apollographql-client-version: 1.2.0"), "{seen:?}");
        assert!(has_name(seen, "x-request-id"), "{seen:?}");
        for name in ["x-tenant", "x-feature-dark-mode", "cookie"] {
            assert!(
                !has_name(seen, name),
                "{name} must stay at the gateway: {seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn rules_propagate_rename_insert_and_remove_headers_per_subgraph() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("headers.yaml");
    std::fs::write(
        &rules,
        "
all:
  - propagate: { matching: '^x-feature-' }
subgraphs:
  orders:
    - propagate: { named: x-tenant, rename: x-orders-tenant }
    - propagate: { named: x-region, default: eu }
    - insert: { name: x-caller, value: gantry }
    - remove: { named: apollographql-client-version }
",
    )
    .unwrap();
    let gantry = gateway(&dir, &["--headers-config", rules.to_str().unwrap()]).await;

    let (accounts, orders) = headers_seen(&gantry).await;

    assert!(has(&accounts, "x-feature-dark-mode: on"), "{accounts:?}");
    assert!(
        has(&accounts, "apollographql-client-version: 1.2.0"),
        "{accounts:?}"
    );
    for name in [
        "x-tenant",
        "x-orders-tenant",
        "x-region",
        "x-caller",
        "cookie",
    ] {
        assert!(!has_name(&accounts, name), "{name}: {accounts:?}");
    }
    for header in [
        "x-feature-dark-mode: on",
        "x-orders-tenant: acme",
        "x-region: eu",
        "x-caller: gantry",
        "apollographql-client-name: web",
    ] {
        assert!(has(&orders, header), "{header}: {orders:?}");
    }
    for name in ["x-tenant", "apollographql-client-version", "cookie"] {
        assert!(!has_name(&orders, name), "{name}: {orders:?}");
    }
}

#[tokio::test]
async fn a_malformed_rules_file_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("headers.yaml");
    std::fs::write(&rules, "all:\n  - propagate: { matching: '(' }\n").unwrap();
    let key = key_file(dir.path());

    let output = crate::helpers::run(
        &[
            "gateway",
            "--supergraph",
            "/nonexistent",
            "--headers-config",
            rules.to_str().unwrap(),
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a valid regular expression"),
        "{stderr}"
    );
}

struct Users;

#[Object(name = "Query")]
impl Users {
    async fn ping(&self) -> bool {
        true
    }
}

struct UsersMutation;

#[Object(name = "Mutation")]
impl UsersMutation {
    /// Answers the way a session login does: a cookie, and a header only for operators.
    async fn login(&self, ctx: &Context<'_>) -> bool {
        ctx.append_http_header("set-cookie", "session=abc; HttpOnly; Secure");
        ctx.append_http_header("set-cookie", "theme=dark");
        ctx.insert_http_header("x-internal", "users-7");
        true
    }
}

/// A `users` subgraph whose `login` sets cookies on its HTTP answer.
async fn cookie_subgraph() -> String {
    let schema = Schema::build(Users, UsersMutation, EmptySubscription)
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
    format!("users=http://{address}/graphql")
}

/// The `set-cookie` and `x-internal` headers of a login through `gantry`.
async fn login_headers(gantry: &Process) -> (Vec<String>, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .json(&json!({ "query": "mutation { login }" }))
        .send()
        .await
        .unwrap();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let internal = response
        .headers()
        .get("x-internal")
        .map(|value| value.to_str().unwrap().to_owned());
    (cookies, internal, response.json().await.unwrap())
}

#[tokio::test]
async fn a_subgraphs_set_cookie_reaches_the_client_only_by_a_response_rule() {
    let users = cookie_subgraph().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("headers.yaml");
    std::fs::write(
        &rules,
        "
responses:
  subgraphs:
    users:
      - propagate: { named: set-cookie }
",
    )
    .unwrap();
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
    ];
    let plain = start(&["gateway", "--subgraph", &users], &env).await;
    let ruled = start(
        &[
            "gateway",
            "--subgraph",
            &users,
            "--headers-config",
            rules.to_str().unwrap(),
        ],
        &env,
    )
    .await;

    let by_default = login_headers(&plain).await;
    let by_rule = login_headers(&ruled).await;

    let answer = json!({ "data": { "login": true } });
    assert_eq!(by_default, (vec![], None, answer.clone()));
    assert_eq!(
        by_rule,
        (
            vec![
                "session=abc; HttpOnly; Secure".to_owned(),
                "theme=dark".to_owned()
            ],
            None,
            answer
        )
    );
}
