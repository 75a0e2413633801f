//! Authorization directives at the gateway, through the real binary: `@authenticated`,
//! `@requiresScopes` and `@policy` in a subgraph's schema decide what a caller gets, before
//! the subgraph is asked; and the users and posts subgraphs' own annotations (`me`,
//! `email`, `feed`, the mutations that need a viewer).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::Object;
use gantry::cli::{GatewayOptions, ServeArgs};
use gantry_kit::authorization::{authenticated, policy};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fresh_database, settings};
use crate::identity::{JwksServer, TestKey, ask, gateway, subgraph};

const ISSUER: &str = "https://id.example/";

struct Reports {
    reports_resolved: Arc<AtomicUsize>,
}

#[Object(name = "Query")]
impl Reports {
    async fn public_note(&self) -> &str {
        "hello"
    }

    // Fields a caller may be refused are nullable: a refused non-null field nulls its
    // parent, here the whole `data`.
    #[graphql(directive = authenticated::apply())]
    async fn my_name(&self) -> Option<&str> {
        Some("alice")
    }

    #[graphql(requires_scopes = "reports:read")]
    async fn report(&self) -> Option<&str> {
        self.reports_resolved.fetch_add(1, Ordering::SeqCst);
        Some("quarterly")
    }

    #[graphql(directive = policy::apply(vec![vec!["admin".into(), "verified".into()]]))]
    async fn audit_log(&self) -> Option<Vec<String>> {
        Some(vec!["entry".into()])
    }

    #[graphql(directive = policy::apply(vec![vec!["nobody-defines-this".into()]]))]
    async fn vault(&self) -> Option<&str> {
        Some("gold")
    }

    async fn staff(&self) -> Vec<Staff> {
        vec![Staff("ada"), Staff("grace")]
    }
}

struct Staff(&'static str);

#[Object]
impl Staff {
    async fn name(&self) -> &str {
        self.0
    }

    #[graphql(requires_scopes = "hr:read")]
    async fn salary(&self) -> Option<i32> {
        Some(100)
    }
}

fn auth_settings(jwks: &JwksServer, reject: bool) -> String {
    format!(
        "
providers:
  - {{ name: id, jwks_url: '{}', issuers: ['{ISSUER}'] }}
authorization:
  reject_unauthorized: {reject}
  policies:
    admin: [{{ claim: role, equals: admin }}]
    verified: [{{ claim: email_verified, equals: true }}]
",
        jwks.url
    )
}

const EVERYTHING: &str = "{ publicNote myName report auditLog vault staff { name salary } }";

/// `(code, path)` of every error, in order.
fn unauthorized(body: &Value) -> Vec<(String, Value)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["extensions"]["code"].as_str().unwrap_or("").to_owned(),
                        e["path"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn code_at(path: Value) -> (String, Value) {
    ("UNAUTHORIZED_FIELD_OR_TYPE".to_owned(), path)
}

#[tokio::test]
async fn fields_the_caller_may_not_see_are_null_with_an_error_and_never_reach_the_subgraph() {
    let key = TestKey::rsa("id-1");
    let jwks = JwksServer::serving(&[&key]).await;
    let resolved = Arc::new(AtomicUsize::new(0));
    let url = subgraph(Reports {
        reports_resolved: resolved.clone(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &url, &auth_settings(&jwks, false), None).await;

    let (status, anonymous) = ask(&gantry, EVERYTHING, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        anonymous["data"],
        json!({
            "publicNote": "hello", "myName": null, "report": null, "auditLog": null, "vault": null,
            "staff": [{ "name": "ada", "salary": null }, { "name": "grace", "salary": null }],
        })
    );
    assert_eq!(
        unauthorized(&anonymous),
        vec![
            code_at(json!(["auditLog"])),
            code_at(json!(["myName"])),
            code_at(json!(["report"])),
            code_at(json!(["staff", "@", "salary"])),
            code_at(json!(["vault"])),
        ]
    );
    assert_eq!(
        resolved.load(Ordering::SeqCst),
        0,
        "the subgraph never resolved `report`"
    );

    let reader = key.sign(json!({ "iss": ISSUER, "sub": "bob", "scope": "reports:read" }));
    let (_, body) = ask(
        &gantry,
        EVERYTHING,
        &[("authorization", &format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(body["data"]["myName"], "alice");
    assert_eq!(body["data"]["report"], "quarterly");
    assert_eq!(
        unauthorized(&body),
        vec![
            code_at(json!(["auditLog"])),
            code_at(json!(["staff", "@", "salary"])),
            code_at(json!(["vault"])),
        ]
    );

    let admin = key.sign(json!({
        "iss": ISSUER, "sub": "carol", "scope": ["reports:read", "hr:read"],
        "role": ["staff", "admin"], "email_verified": true,
    }));
    let (_, body) = ask(
        &gantry,
        EVERYTHING,
        &[("authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert_eq!(body["data"]["auditLog"], json!(["entry"]));
    assert_eq!(
        body["data"]["staff"][1],
        json!({ "name": "grace", "salary": 100 })
    );
    assert_eq!(
        unauthorized(&body),
        vec![code_at(json!(["vault"]))],
        "a policy no rule defines is refused to everyone"
    );

    let unverified = key.sign(json!({ "iss": ISSUER, "sub": "dan", "role": "admin" }));
    let (_, body) = ask(
        &gantry,
        "{ auditLog }",
        &[("authorization", &format!("Bearer {unverified}"))],
    )
    .await;
    assert_eq!(body["data"]["auditLog"], Value::Null, "{body}");
    assert_eq!(resolved.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_reject_mode_refuses_the_whole_operation() {
    let key = TestKey::ec("id-1");
    let jwks = JwksServer::serving(&[&key]).await;
    let resolved = Arc::new(AtomicUsize::new(0));
    let url = subgraph(Reports {
        reports_resolved: resolved.clone(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &url, &auth_settings(&jwks, true), None).await;

    let (_, body) = ask(&gantry, "{ publicNote report }", &[]).await;
    assert_eq!(body.get("data"), None, "{body}");
    assert_eq!(unauthorized(&body), vec![code_at(json!(["report"]))]);

    let (_, body) = ask(&gantry, "{ publicNote }", &[]).await;
    assert_eq!(body, json!({ "data": { "publicNote": "hello" } }));
    let reader = key.sign(json!({ "iss": ISSUER, "sub": "bob", "scope": "reports:read" }));
    let (_, body) = ask(
        &gantry,
        "{ publicNote report }",
        &[("authorization", &format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(
        body,
        json!({ "data": { "publicNote": "hello", "report": "quarterly" } })
    );
    assert_eq!(resolved.load(Ordering::SeqCst), 1);
}

/// `gantry serve`'s app, in this process, on a fresh database of `backend`, with these
/// identity settings.
async fn serve_with(backend: Backend, auth: Option<&str>) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let url = fresh_database(backend, data_dir.path()).await;
    let common = settings(data_dir.path(), &url, &[]);
    let auth_config = auth.map(|text| {
        let file = data_dir.path().join("auth.yaml");
        std::fs::write(&file, text).unwrap();
        file
    });
    let args = ServeArgs {
        listen: None,
        common: common.clone(),
        gateway: GatewayOptions {
            auth_config,
            ..GatewayOptions::default()
        },
    };
    let app = gantry::commands::serve::build(&common, &args)
        .await
        .unwrap();
    TestApp::serve(app.router, Some(app.tasks), data_dir, url).await
}

#[tokio::test]
async fn our_subgraphs_fields_that_need_a_viewer_are_refused_to_anonymous_callers() {
    let app = serve_with(Backend::Postgres, None).await;
    let author = app.register("author").await;
    let token = author["accessToken"].as_str().unwrap().to_owned();
    app.graphql(
        "mutation { createPost(input: { body: \"hello\" }) { id } }",
        json!({}),
        Some(&token),
    )
    .await;

    let anonymous = app
        .graphql(
            "{ me { id } feed { edges { cursor } } latestPosts(first: 1) { edges { node { body author { username email } } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(anonymous["data"]["me"], Value::Null);
    assert_eq!(
        anonymous["data"]["latestPosts"]["edges"][0]["node"],
        json!({ "body": "hello", "author": { "username": "author", "email": null } })
    );
    assert_eq!(
        unauthorized(&anonymous),
        vec![code_at(json!(["feed"])), code_at(json!(["me"])),],
        "{anonymous}"
    );

    let refused = app
        .graphql(
            "mutation { createPost(input: { body: \"spam\" }) { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        unauthorized(&refused),
        vec![code_at(json!(["createPost"]))],
        "{refused}"
    );
    let latest = app
        .graphql(
            "{ latestPosts { edges { node { body } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        latest["data"]["latestPosts"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no post was made: {latest}"
    );

    let signed_in = app
        .graphql(
            "{ me { username email } feed { edges { node { body } } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(signed_in["errors"], Value::Null, "{signed_in}");
    assert_eq!(signed_in["data"]["me"]["email"], "author@example.com");
    assert_eq!(
        signed_in["data"]["feed"]["edges"][0]["node"]["body"],
        "hello"
    );
}

#[tokio::test]
async fn an_external_identity_passes_the_gateway_and_is_anonymous_to_our_subgraphs() {
    let key = TestKey::rsa("id-1");
    let jwks = JwksServer::serving(&[&key]).await;
    let app = serve_with(Backend::Sqlite, Some(&auth_settings(&jwks, false))).await;
    let token = key.sign(json!({ "iss": ISSUER, "sub": "auth0|42" }));

    let body = app
        .graphql(
            "{ me { id } latestPosts { edges { cursor } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        body["errors"],
        Value::Null,
        "`me` passes @authenticated: {body}"
    );
    assert_eq!(
        body["data"]["me"],
        Value::Null,
        "and the users subgraph sees no viewer"
    );

    let body = app
        .graphql(
            "mutation { createPost(input: { body: \"hi\" }) { id } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "the posts subgraph keeps its own check: {body}"
    );
}
