//! Cross-origin calls through the real binary: a page served on one origin calls the
//! gateway on another from headless Chromium, allowed when its origin is configured and
//! refused otherwise; preflights are answered by the CORS policy before any GraphQL work.

use async_graphql::Object;
use axum::response::Html;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::browser::node;
use crate::edge::{key_file, toy_subgraph};
use crate::helpers::{Process, start};

struct Hello;

#[Object(name = "Query")]
impl Hello {
    async fn hello(&self) -> String {
        "world".into()
    }
}

/// `gantry gateway` in front of the `hello` toy subgraph, with `flags`.
async fn gateway(dir: &tempfile::TempDir, flags: &[&str]) -> Process {
    let subgraph = format!("hello={}", toy_subgraph(Hello).await);
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let mut args = vec!["gateway", "--subgraph", &subgraph];
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

/// Serves, on `listener`, a page whose script POSTs `{ hello }` to `api` with a JSON body
/// and a client-name header (so the browser sends a preflight first), and leaves what it
/// could read in `window.apiResult`.
fn serve_page(listener: TcpListener, api: String) {
    let page = format!(
        r#"<!doctype html><title>web app</title><script>
window.apiResult = undefined;
fetch({api:?}, {{
  method: "POST",
  headers: {{ "content-type": "application/json", "apollographql-client-name": "web" }},
  body: JSON.stringify({{ query: "{{ hello }}" }}),
}})
  .then(async (response) => ({{ ok: true, status: response.status, body: await response.json() }}))
  .catch((error) => ({{ ok: false, error: String(error) }}))
  .then((result) => {{ window.apiResult = result; }});
</script>"#
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_reads_the_api_and_any_other_origin_is_refused_in_the_browser()
{
    let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_origin = format!("http://{}", allowed.local_addr().unwrap());
    let refused_origin = format!("http://{}", refused.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &["--cors-allow-origins", &allowed_origin]).await;
    let api = format!("http://{}/graphql", gantry.address);
    serve_page(allowed, api.clone());
    serve_page(refused, api);

    let (ok, output) = node(
        "cors.mjs",
        &[&format!("{allowed_origin}/"), &format!("{refused_origin}/")],
    )
    .await;

    assert!(ok, "the browser check failed:\n{output}");
    let results: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(results[0]["ok"], true, "{results}");
    assert_eq!(results[0]["status"], 200, "{results}");
    assert_eq!(results[0]["body"], json!({ "data": { "hello": "world" } }));
    assert_eq!(results[1]["ok"], false, "{results}");
    assert_eq!(
        results[1]["error"], "TypeError: Failed to fetch",
        "{results}"
    );
}

/// An `OPTIONS` preflight from `origin` asking to POST JSON.
async fn preflight(gantry: &Process, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/graphql", gantry.address),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &reqwest::header::HeaderName) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

#[tokio::test]
async fn preflights_are_answered_by_the_configured_policy_for_exact_and_subdomain_origins() {
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(
        &dir,
        &[
            "--cors-allow-origins",
            "https://app.example.org,https://*.example.com",
            "--cors-allow-credentials",
            "--cors-max-age",
            "600",
            // One operation a minute: preflights must not count against it.
            "--rate-limit-requests",
            "1",
        ],
    )
    .await;

    for origin in ["https://app.example.org", "https://eu.web.example.com"] {
        let response = preflight(&gantry, origin).await;
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN), origin);
        assert_eq!(header(&response, &ACCESS_CONTROL_ALLOW_CREDENTIALS), "true");
        assert_eq!(header(&response, &ACCESS_CONTROL_ALLOW_METHODS), "GET,POST");
        assert_eq!(
            header(&response, &ACCESS_CONTROL_ALLOW_HEADERS),
            "content-type,authorization"
        );
        assert_eq!(header(&response, &ACCESS_CONTROL_MAX_AGE), "600");
    }
    for origin in ["https://example.com", "https://app.example.org.evil.test"] {
        let response = preflight(&gantry, origin).await;
        assert_eq!(
            header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN),
            "",
            "{origin} must not be allowed"
        );
    }

    let answer = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .header("origin", "https://app.example.org")
        .json(&json!({ "query": "{ hello }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&answer, &ACCESS_CONTROL_ALLOW_ORIGIN),
        "https://app.example.org"
    );
    let vary: Vec<_> = answer
        .headers()
        .get_all(reqwest::header::VARY)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        vary.iter().any(|value| value.contains("origin")),
        "{vary:?}"
    );
    assert_eq!(
        answer.status(),
        200,
        "preflights used none of the rate limit"
    );
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({ "data": { "hello": "world" } })
    );
}

#[tokio::test]
async fn without_allowed_origins_no_cors_headers_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &[]).await;

    let response = preflight(&gantry, "https://app.example.org").await;

    assert_eq!(header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN), "");
}

#[tokio::test]
async fn any_origin_with_credentials_refuses_to_start_with_a_clear_error() {
    let subgraph = format!("hello={}", toy_subgraph(Hello).await);
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());

    let output = crate::helpers::run(
        &[
            "gateway",
            "--subgraph",
            &subgraph,
            "--cors-allow-origins",
            "*",
            "--cors-allow-credentials",
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot be combined with credentials"),
        "{stderr}"
    );
}
