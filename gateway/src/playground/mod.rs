//! The GraphiQL playground, served by the gateway itself: the page, and the GraphiQL bundle
//! that `build.rs` builds from `gateway/playground/` (pinned by its `package-lock.json`)
//! and that is embedded in the binary, so the playground works with no internet access.
//!
//! The page loads only `/playground/graphiql.js` and `/playground/graphiql.css` (with a
//! `?v=` content hash, so they can be cached for a year), posts queries and mutations to the
//! GraphQL endpoint and runs subscriptions over a WebSocket to it (`graphql-ws`, bundled);
//! its Content-Security-Policy allows nothing else.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header::IF_NONE_MATCH};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// The GraphiQL bundle built by `build.rs` (esbuild over `gateway/playground/src`).
static GRAPHIQL_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/playground/graphiql.js"));
static GRAPHIQL_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/playground/graphiql.css"));

/// Path of the bundle's script.
pub const SCRIPT_PATH: &str = "/playground/graphiql.js";
/// Path of the bundle's stylesheet.
pub const STYLESHEET_PATH: &str = "/playground/graphiql.css";

/// A hash of both assets: part of their URLs, so a new build is never served from a cache.
static ASSETS_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = Vec::with_capacity(GRAPHIQL_JS.len() + GRAPHIQL_CSS.len());
    bytes.extend_from_slice(GRAPHIQL_JS);
    bytes.extend_from_slice(GRAPHIQL_CSS);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
});

const DEFAULT_QUERY: &str = "# Welcome to Gantry. Run this with the ▶ button (or Ctrl-Enter).
query LatestPosts {
  latestPosts(first: 10) {
    edges {
      node {
        id
        body
        author {
          username
        }
      }
    }
  }
}
";

/// The playground's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaygroundSettings {
    /// Serve the playground at `GET /` and to browsers at `GET {path}`. Production may turn
    /// it off; the endpoint itself is unaffected. Default: true.
    pub enabled: bool,
    /// The page's title. Default: `Gantry playground`.
    pub title: String,
    /// The operation the editor opens with (until the user types their own, which GraphiQL
    /// keeps in the browser's local storage). Default: a `latestPosts` query.
    pub default_query: String,
}

impl Default for PlaygroundSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            title: "Gantry playground".to_string(),
            default_query: DEFAULT_QUERY.to_string(),
        }
    }
}

/// The rendered page (rendered once, at startup).
#[derive(Debug)]
pub struct PlaygroundPage {
    html: String,
}

/// What the page allows: its own scripts and styles (GraphiQL sets inline styles), data:
/// fonts and images (GraphiQL's CSS inlines its fonts), requests to its own origin only
/// (`'self'` covers WebSockets to the same host and port).
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl PlaygroundPage {
    /// The page for `settings`, sending operations to `endpoint` (a path on this origin).
    pub fn new(settings: &PlaygroundSettings, endpoint: &str) -> Self {
        let config = serde_json::json!({
            "endpoint": endpoint,
            "defaultQuery": settings.default_query,
        });
        // `<` escaped so no value can close the <script> element.
        let config = config.to_string().replace('<', "\\u003c");
        let version = ASSETS_VERSION.as_str();
        let title = escape_html(&settings.title);
        let html = format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{STYLESHEET_PATH}?v={version}">
<style>html, body, #graphiql {{ height: 100%; margin: 0; overflow: hidden; }}</style>
</head>
<body>
<div id="graphiql">Loading…</div>
<script id="gantry-playground-config" type="application/json">{config}</script>
<script src="{SCRIPT_PATH}?v={version}" defer></script>
</body>
</html>
"#
        );
        Self { html }
    }

    pub fn html(&self) -> &str {
        &self.html
    }

    pub fn response(&self) -> Response {
        (
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
                (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
            ],
            self.html.clone(),
        )
            .into_response()
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The routes of the bundle's two files (and an empty `/favicon.ico`, which browsers ask
/// for whatever the page says); mount at the root, next to the page.
pub fn assets_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/favicon.ico",
            get(|| async {
                (
                    StatusCode::NO_CONTENT,
                    [(CACHE_CONTROL, "public, max-age=86400")],
                )
            }),
        )
        .route(
            SCRIPT_PATH,
            get(|headers: HeaderMap| async move {
                asset(&headers, GRAPHIQL_JS, "text/javascript; charset=utf-8")
            }),
        )
        .route(
            STYLESHEET_PATH,
            get(|headers: HeaderMap| async move {
                asset(&headers, GRAPHIQL_CSS, "text/css; charset=utf-8")
            }),
        )
}

fn asset(headers: &HeaderMap, bytes: &'static [u8], content_type: &'static str) -> Response {
    let etag = format!("\"{}\"", ASSETS_VERSION.as_str());
    let cache = (
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    let etag_header = (
        ETAG,
        HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
    );
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    if matches {
        return (StatusCode::NOT_MODIFIED, [cache, etag_header]).into_response();
    }
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            cache,
            etag_header,
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_the_embedded_assets() {
        let page = PlaygroundPage::new(&PlaygroundSettings::default(), "/graphql");
        let html = page.html();
        assert!(html.contains(&format!("{SCRIPT_PATH}?v=")));
        assert!(html.contains(&format!("{STYLESHEET_PATH}?v=")));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }

    #[test]
    fn the_page_opens_with_the_latest_posts_example() {
        let page = PlaygroundPage::new(&PlaygroundSettings::default(), "/graphql");
        assert!(page.html().contains("latestPosts(first: 10)"));
        assert!(page.html().contains(r#""endpoint":"/graphql""#));
    }

    #[test]
    fn configured_text_cannot_close_the_script_element() {
        let settings = PlaygroundSettings {
            title: "<b>t</b>".to_string(),
            default_query: "</script><script>alert(1)</script>".to_string(),
            ..PlaygroundSettings::default()
        };
        let html = PlaygroundPage::new(&settings, "/graphql")
            .html()
            .to_string();
        assert!(!html.contains("</script><script>alert"), "{html}");
        assert!(html.contains("<title>&lt;b&gt;t&lt;/b&gt;</title>"));
    }

    #[test]
    fn the_bundle_is_embedded() {
        assert!(
            GRAPHIQL_JS.len() > 100_000,
            "graphiql.js is {} bytes",
            GRAPHIQL_JS.len()
        );
        assert!(
            GRAPHIQL_CSS.len() > 10_000,
            "graphiql.css is {} bytes",
            GRAPHIQL_CSS.len()
        );
    }
}
