//! Every rule of the HTTP layer, as a client sees it: status, headers and body.

use gantry_gateway::graphql_http::HttpSettings;
use gantry_gateway::playground::PlaygroundSettings;
use serde_json::json;

use crate::support::{TestServer, header, json};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const APPLICATION_JSON: &str = "application/json; charset=utf-8";
const ACCEPT_GRAPHQL: (&str, &str) = ("accept", "application/graphql-response+json");
const ACCEPT_JSON: (&str, &str) = ("accept", "application/json");

fn bad_request(message_part: &str, body: &serde_json::Value) {
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
        "{body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    assert!(body.get("data").is_none(), "{body}");
}

// --- media types ---

#[tokio::test]
async fn a_post_without_accept_gets_application_json() {
    let server = TestServer::spawn().await;

    let response = server.post(r#"{"query":"{ hello }"}"#, &[]).await;

    let (status, content_type, body) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, APPLICATION_JSON);
    assert_eq!(body, json!({"data": {"hello": "world"}}));
}

#[tokio::test]
async fn a_client_naming_graphql_response_json_gets_it() {
    let server = TestServer::spawn().await;

    let response = server
        .post(r#"{"query":"{ hello }"}"#, &[ACCEPT_GRAPHQL])
        .await;

    let (status, content_type, body) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, GRAPHQL_RESPONSE_JSON);
    assert_eq!(body, json!({"data": {"hello": "world"}}));
}

#[tokio::test]
async fn a_wildcard_accept_gets_application_json() {
    let server = TestServer::spawn().await;

    let response = server
        .post(r#"{"query":"{ hello }"}"#, &[("accept", "*/*")])
        .await;

    let (status, content_type, _) = json(response).await;
    assert_eq!((status, content_type.as_str()), (200, APPLICATION_JSON));
}

#[tokio::test]
async fn an_unacceptable_accept_is_406() {
    let server = TestServer::spawn().await;

    let response = server
        .post(r#"{"query":"{ hello }"}"#, &[("accept", "text/plain")])
        .await;

    let (status, content_type, body) = json(response).await;
    assert_eq!(status, 406);
    assert_eq!(content_type, APPLICATION_JSON);
    bad_request("application/graphql-response+json", &body);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let server = TestServer::spawn().await;

    for content_type in [
        "text/plain;charset=UTF-8",
        "application/graphql-response+json",
    ] {
        let response = server
            .post(
                r#"{"query":"{ hello }"}"#,
                &[("content-type", content_type)],
            )
            .await;
        let (status, _, body) = json(response).await;
        assert_eq!(status, 415, "{content_type}");
        bad_request("Unsupported Content-Type", &body);
    }
}

#[tokio::test]
async fn a_post_without_content_type_is_415() {
    let server = TestServer::spawn().await;

    let response = server
        .client
        .post(server.url("/graphql"))
        .body(r#"{"query":"{ hello }"}"#)
        .send()
        .await
        .expect("POST");

    let (status, _, body) = json(response).await;
    assert_eq!(status, 415);
    bad_request("Missing Content-Type", &body);
}

#[tokio::test]
async fn a_utf8_charset_is_accepted_and_others_are_415() {
    let server = TestServer::spawn().await;
    let body = r#"{"query":"{ echo(x: \"Run🏃Swim🏊\") }"}"#;

    let utf8 = server
        .post(body, &[("content-type", "application/json; charset=utf-8")])
        .await;
    let latin1 = server
        .post(
            body,
            &[("content-type", "application/json; charset=latin1")],
        )
        .await;

    assert_eq!(json(utf8).await.2, json!({"data": {"echo": "Run🏃Swim🏊"}}));
    assert_eq!(latin1.status().as_u16(), 415);
}

// --- status codes of GraphQL errors ---

#[tokio::test]
async fn a_parse_error_is_400_under_graphql_response_json_and_200_under_json() {
    let server = TestServer::spawn().await;

    let strict = server.post(r#"{"query":"{"}"#, &[ACCEPT_GRAPHQL]).await;
    let legacy = server.post(r#"{"query":"{"}"#, &[ACCEPT_JSON]).await;

    let (status, content_type, body) = json(strict).await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, GRAPHQL_RESPONSE_JSON)
    );
    assert!(
        body.get("data").is_none() && body["errors"][0]["message"].is_string(),
        "{body}"
    );
    let (status, content_type, body) = json(legacy).await;
    assert_eq!((status, content_type.as_str()), (200, APPLICATION_JSON));
    assert!(
        body.get("data").is_none() && body["errors"].is_array(),
        "{body}"
    );
}

#[tokio::test]
async fn a_validation_error_is_400_under_graphql_response_json_and_200_under_json() {
    let server = TestServer::spawn().await;
    let unknown_field = r#"{"query":"{ nope }"}"#;

    let strict = server.post(unknown_field, &[ACCEPT_GRAPHQL]).await;
    let legacy = server.post(unknown_field, &[ACCEPT_JSON]).await;

    assert_eq!(strict.status().as_u16(), 400);
    assert_eq!(legacy.status().as_u16(), 200);
    assert!(json(strict).await.2.get("data").is_none());
}

#[tokio::test]
async fn a_variable_coercion_error_is_400_under_graphql_response_json() {
    let server = TestServer::spawn().await;
    let body = r#"{"query":"query CoerceFailure($id: ID!) { hello }","variables":{"id":null}}"#;

    let strict = server.post(body, &[ACCEPT_GRAPHQL]).await;
    let legacy = server.post(body, &[ACCEPT_JSON]).await;

    assert_eq!(strict.status().as_u16(), 400);
    assert_eq!(legacy.status().as_u16(), 200);
}

// --- malformed requests ---

#[tokio::test]
async fn a_malformed_json_body_is_400() {
    let server = TestServer::spawn().await;

    for accept in [ACCEPT_GRAPHQL, ACCEPT_JSON] {
        let response = server.post(r#"{ "not a JSON"#, &[accept]).await;
        let (status, _, body) = json(response).await;
        assert_eq!(status, 400, "{accept:?}");
        bad_request("not valid JSON", &body);
    }
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let server = TestServer::spawn().await;

    let (status, _, body) = json(server.post("", &[]).await).await;

    assert_eq!(status, 400);
    bad_request("empty", &body);
}

#[tokio::test]
async fn a_missing_query_is_400_whatever_the_accept() {
    let server = TestServer::spawn().await;

    for accept in [ACCEPT_GRAPHQL, ACCEPT_JSON] {
        let (status, _, body) =
            json(server.post(r#"{"qeury":"{ hello }"}"#, &[accept]).await).await;
        assert_eq!(status, 400);
        bad_request(r#""query" parameter is missing"#, &body);
    }
}

#[tokio::test]
async fn parameters_of_the_wrong_type_are_400() {
    let server = TestServer::spawn().await;

    for body in [
        r#"{"query":["array"]}"#,
        r#"{"query":"{ hello }","operationName":0}"#,
        r#"{"query":"{ hello }","variables":"string"}"#,
        r#"{"query":"{ hello }","extensions":false}"#,
    ] {
        let (status, _, response) = json(server.post(body, &[]).await).await;
        assert_eq!(status, 400, "{body}");
        bad_request("parameter must be", &response);
    }
}

#[tokio::test]
async fn null_optional_parameters_are_accepted() {
    let server = TestServer::spawn().await;

    let response = server
        .post(
            r#"{"query":"{ hello }","operationName":null,"variables":null,"extensions":null}"#,
            &[ACCEPT_JSON],
        )
        .await;

    assert_eq!(json(response).await.2, json!({"data": {"hello": "world"}}));
}

#[tokio::test]
async fn a_persisted_query_request_without_query_reaches_the_executor() {
    let server = TestServer::spawn().await;

    let response = server
        .post(
            r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"ab"}}}"#,
            &[ACCEPT_JSON],
        )
        .await;

    let (status, _, body) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let server = TestServer::spawn_with(HttpSettings {
        max_body_bytes: 1024,
        ..HttpSettings::default()
    })
    .await;
    let padding = "x".repeat(2048);

    let response = server
        .post(
            &format!(r#"{{"query":"{{ echo(x: \"{padding}\") }}"}}"#),
            &[],
        )
        .await;
    let small = server.post(r#"{"query":"{ hello }"}"#, &[]).await;

    let (status, _, body) = json(response).await;
    assert_eq!(status, 413);
    bad_request("larger than 1024 bytes", &body);
    assert_eq!(small.status().as_u16(), 200);
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let server = TestServer::spawn().await;

    let response = server
        .client
        .put(server.url("/graphql"))
        .send()
        .await
        .expect("PUT");

    assert_eq!(response.status().as_u16(), 405);
    let allow = header(&response, "allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

// --- GET ---

#[tokio::test]
async fn a_get_query_with_json_variables_runs() {
    let server = TestServer::spawn().await;

    let response = server
        .get(
            "/graphql?query=query%20Q(%24x%3A%20String)%20%7B%20echo(x%3A%20%24x)%20%7D\
             &operationName=Q&variables=%7B%22x%22%3A%22hi%22%7D",
            &[ACCEPT_GRAPHQL],
        )
        .await;

    assert_eq!(header(&response, "cache-control"), "public, max-age=60");
    assert_eq!(header(&response, "vary"), "accept");
    let (status, content_type, body) = json(response).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, GRAPHQL_RESPONSE_JSON)
    );
    assert_eq!(body, json!({"data": {"echo": "hi"}}));
}

#[tokio::test]
async fn a_get_without_accept_gets_application_json() {
    let server = TestServer::spawn().await;

    let response = server.get("/graphql?query=%7B%20hello%20%7D", &[]).await;

    let (status, content_type, body) = json(response).await;
    assert_eq!((status, content_type.as_str()), (200, APPLICATION_JSON));
    assert_eq!(body, json!({"data": {"hello": "world"}}));
}

#[tokio::test]
async fn a_mutation_over_get_is_405_with_allow_post() {
    let server = TestServer::spawn().await;

    let response = server
        .get(
            "/graphql?query=mutation%20%7B%20noop%20%7D",
            &[ACCEPT_GRAPHQL],
        )
        .await;

    assert_eq!(header(&response, "allow"), "POST");
    let (status, _, body) = json(response).await;
    assert_eq!(status, 405);
    bad_request("only accepted over POST", &body);
}

#[tokio::test]
async fn a_named_mutation_among_queries_over_get_is_405() {
    let server = TestServer::spawn().await;

    let response = server
        .get(
            "/graphql?query=query%20A%20%7B%20hello%20%7D%20mutation%20B%20%7B%20noop%20%7D\
             &operationName=B",
            &[],
        )
        .await;

    assert_eq!(response.status().as_u16(), 405);
}

#[tokio::test]
async fn a_mutation_over_post_runs() {
    let server = TestServer::spawn().await;

    let response = server.post(r#"{"query":"mutation { noop }"}"#, &[]).await;

    let (status, _, body) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"noop": true}}));
}

#[tokio::test]
async fn an_unparsable_get_query_is_answered_by_the_executor() {
    let server = TestServer::spawn().await;

    let strict = server.get("/graphql?query=%7B", &[ACCEPT_GRAPHQL]).await;
    let legacy = server.get("/graphql?query=%7B", &[ACCEPT_JSON]).await;

    let (status, _, body) = json(strict).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    assert_eq!(legacy.status().as_u16(), 200);
}

#[tokio::test]
async fn bad_get_parameters_are_400() {
    let server = TestServer::spawn().await;

    for path in [
        "/graphql",
        "/graphql?query=%7B%20hello%20%7D&variables=%7Bnope",
        "/graphql?query=%7B%20hello%20%7D&variables=%5B1%5D",
        "/graphql?query=%7B%20hello%20%7D&extensions=3",
        "/graphql?query=%7B%20a%20%7D&query=%7B%20b%20%7D",
    ] {
        let (status, _, body) = json(server.get(path, &[]).await).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    }
}

// --- batches ---

#[tokio::test]
async fn a_batch_gets_an_array_of_results_in_order() {
    let server = TestServer::spawn().await;

    let response = server
        .post(
            r#"[{"query":"{ hello }"}, {"query":"query($x: String) { echo(x: $x) }","variables":{"x":"b"}},
                {"qeury":"{ hello }"}, {"query":"{ nope }"}]"#,
            &[ACCEPT_GRAPHQL],
        )
        .await;

    let (status, content_type, body) = json(response).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, GRAPHQL_RESPONSE_JSON)
    );
    let items = body.as_array().expect("an array");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0], json!({"data": {"hello": "world"}}));
    assert_eq!(items[1], json!({"data": {"echo": "b"}}));
    assert_eq!(items[2]["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(items[3].get("data").is_none() && items[3]["errors"].is_array());
}

#[tokio::test]
async fn a_batch_over_the_limit_is_400() {
    let server = TestServer::spawn_with(HttpSettings {
        max_batch_size: 2,
        ..HttpSettings::default()
    })
    .await;
    let three = format!("[{}]", [r#"{"query":"{ hello }"}"#; 3].join(","));

    let (status, _, body) = json(server.post(&three, &[]).await).await;

    assert_eq!(status, 400);
    bad_request("at most 2 requests", &body);
}

#[tokio::test]
async fn batching_can_be_turned_off() {
    let server = TestServer::spawn_with(HttpSettings {
        max_batch_size: 0,
        ..HttpSettings::default()
    })
    .await;

    let (status, _, body) = json(server.post(r#"[{"query":"{ hello }"}]"#, &[]).await).await;

    assert_eq!(status, 400);
    bad_request("not accepted", &body);
}

#[tokio::test]
async fn an_empty_batch_is_400() {
    let server = TestServer::spawn().await;

    let (status, _, body) = json(server.post("[]", &[]).await).await;

    assert_eq!(status, 400);
    bad_request("at least one", &body);
}

// --- compression ---

#[tokio::test]
async fn responses_are_compressed_with_gzip_or_brotli_on_request() {
    let server = TestServer::spawn().await;
    let long = "abc".repeat(500);
    let body = format!(r#"{{"query":"{{ echo(x: \"{long}\") }}"}}"#);

    let gzip = server.post(&body, &[("accept-encoding", "gzip")]).await;
    let brotli = server.post(&body, &[("accept-encoding", "br")]).await;
    let plain = server.post(&body, &[]).await;

    assert_eq!(header(&gzip, "content-encoding"), "gzip");
    let bytes = gzip.bytes().await.expect("body");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic number");
    assert!(bytes.len() < long.len() / 2, "{} bytes", bytes.len());
    assert_eq!(header(&brotli, "content-encoding"), "br");
    assert!(brotli.bytes().await.expect("body").len() < long.len() / 2);
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(json(plain).await.2["data"]["echo"], long);
}

#[tokio::test]
async fn compression_can_be_turned_off() {
    let server = TestServer::spawn_with(HttpSettings {
        compression: false,
        ..HttpSettings::default()
    })
    .await;
    let body = format!(r#"{{"query":"{{ echo(x: \"{}\") }}"}}"#, "abc".repeat(500));

    let response = server.post(&body, &[("accept-encoding", "gzip, br")]).await;

    assert_eq!(header(&response, "content-encoding"), "");
}

// --- request ids and context ---

#[tokio::test]
async fn every_response_carries_a_generated_request_id_the_executor_saw() {
    let server = TestServer::spawn().await;

    let response = server
        .post(r#"{"query":"{ requestId clientIp }"}"#, &[])
        .await;
    let refused = server.post("nope", &[("content-type", "text/plain")]).await;

    let id = header(&response, "x-request-id");
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    assert_eq!(id.as_bytes()[14], b'7', "a UUIDv7: {id}");
    let (_, _, body) = json(response).await;
    assert_eq!(body["data"]["requestId"], id);
    assert_eq!(body["data"]["clientIp"], "127.0.0.1");
    assert_eq!(header(&refused, "x-request-id").len(), 36);
}

#[tokio::test]
async fn a_valid_client_request_id_is_kept_and_an_invalid_one_replaced() {
    let server = TestServer::spawn().await;

    let kept = server
        .post(
            r#"{"query":"{ requestId }"}"#,
            &[("x-request-id", "client-id_42")],
        )
        .await;
    let replaced = server
        .post(r#"{"query":"{ hello }"}"#, &[("x-request-id", "bad id <>")])
        .await;

    assert_eq!(header(&kept, "x-request-id"), "client-id_42");
    assert_eq!(json(kept).await.2["data"]["requestId"], "client-id_42");
    let replacement = header(&replaced, "x-request-id");
    assert_eq!(replacement.len(), 36, "{replacement}");
}

// --- playground ---

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test]
async fn a_browser_gets_the_playground_at_the_endpoint_and_at_the_root() {
    let server = TestServer::spawn().await;

    for path in ["/graphql", "/"] {
        let response = server.get(path, &[("accept", BROWSER_ACCEPT)]).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8"
        );
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        let html = response.text().await.expect("html");
        assert!(html.contains("/playground/graphiql.js?v="), "{html}");
        assert!(html.contains(r#""endpoint":"/graphql""#), "{html}");
        assert!(html.contains("latestPosts"), "{html}");
    }
}

#[tokio::test]
async fn the_playground_assets_are_served_with_long_lived_caching() {
    let server = TestServer::spawn().await;

    for (path, content_type) in [
        ("/playground/graphiql.js", "text/javascript; charset=utf-8"),
        ("/playground/graphiql.css", "text/css; charset=utf-8"),
    ] {
        let response = server.get(path, &[]).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(header(&response, "content-type"), content_type);
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = header(&response, "etag");
        assert!(response.bytes().await.expect("asset").len() > 10_000);

        let revalidated = server.get(path, &[("if-none-match", &etag)]).await;
        assert_eq!(revalidated.status().as_u16(), 304, "{path}");
    }
}

#[tokio::test]
async fn a_favicon_request_is_answered_without_an_error() {
    let server = TestServer::spawn().await;

    let response = server.get("/favicon.ico", &[]).await;

    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test]
async fn the_playground_assets_are_compressed() {
    let server = TestServer::spawn().await;

    let response = server
        .get("/playground/graphiql.js", &[("accept-encoding", "br")])
        .await;

    assert_eq!(header(&response, "content-encoding"), "br");
}

#[tokio::test]
async fn a_disabled_playground_is_not_served() {
    let server = TestServer::spawn_with(HttpSettings {
        playground: PlaygroundSettings {
            enabled: false,
            ..PlaygroundSettings::default()
        },
        ..HttpSettings::default()
    })
    .await;

    let root = server.get("/", &[("accept", BROWSER_ACCEPT)]).await;
    let endpoint = server
        .get(
            "/graphql?query=%7B%20hello%20%7D",
            &[("accept", BROWSER_ACCEPT)],
        )
        .await;
    let assets = server.get("/playground/graphiql.js", &[]).await;

    assert_eq!(root.status().as_u16(), 404);
    assert_eq!(assets.status().as_u16(), 404);
    let (status, content_type, _) = json(endpoint).await;
    assert_eq!((status, content_type.as_str()), (200, APPLICATION_JSON));
}

#[tokio::test]
async fn the_default_query_is_configurable() {
    let server = TestServer::spawn_with(HttpSettings {
        playground: PlaygroundSettings {
            default_query: "{ hello }".to_string(),
            ..PlaygroundSettings::default()
        },
        ..HttpSettings::default()
    })
    .await;

    let html = server.get("/", &[]).await.text().await.expect("html");

    assert!(html.contains(r#""defaultQuery":"{ hello }""#), "{html}");
}
