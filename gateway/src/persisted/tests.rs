use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::*;

const HELLO: &str = "query Hello { hello }";

fn apq_request(query: Option<&str>, hash: &str) -> GraphQLRequest {
    GraphQLRequest {
        query: query.map(str::to_owned),
        extensions: json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
            .as_object()
            .cloned(),
        ..GraphQLRequest::default()
    }
}

fn always(_: &str, _: Option<&str>) -> bool {
    true
}

fn never(_: &str, _: Option<&str>) -> bool {
    false
}

/// A client whose texts all validate.
fn anyone() -> Registrar<'static> {
    Registrar {
        client: "10.0.0.1",
        validates: &always,
    }
}

fn counter(persisted: &PersistedQueries, name: &str) -> u64 {
    persisted
        .metrics()
        .into_iter()
        .find(|(counter, _)| *counter == name)
        .map_or(0, |(_, value)| value)
}

fn code(response: &GraphQLResponse) -> &str {
    response
        .errors()
        .first()
        .and_then(|error| error.code())
        .unwrap_or_default()
}

fn with_manifest(safelist: bool, bypass: Option<&str>) -> (PersistedQueries, tempfile_dir::Dir) {
    let dir = tempfile_dir::Dir::new();
    let path = dir.path.join("manifest.json");
    let manifest = json!({
        "format": manifest::MANIFEST_FORMAT, "version": 1,
        "operations": [{ "id": sha256_hex(HELLO), "body": HELLO, "name": "Hello", "type": "query" }]
    });
    std::fs::write(&path, manifest.to_string()).unwrap();
    let settings = PersistedSettings {
        manifest: Some(path),
        safelist,
        bypass_header: bypass.map(|b| b.parse().unwrap()),
        ..PersistedSettings::default()
    };
    (PersistedQueries::new(settings, None).unwrap(), dir)
}

/// A temporary directory removed on drop (the gateway crate has no tempfile dependency).
mod tempfile_dir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("gantry-pq-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&path).unwrap();
            Self { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.path).ok();
        }
    }
}

#[tokio::test]
async fn an_unknown_hash_is_not_found_with_status_200_then_registration_makes_it_known() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let headers = HeaderMap::new();
    let hash = sha256_hex(HELLO);

    let mut request = apq_request(None, &hash);
    let refusal = persisted
        .resolve(&mut request, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(
        refusal.to_json(),
        json!({"errors":[{"message":"PersistedQueryNotFound","extensions":{"code":"PERSISTED_QUERY_NOT_FOUND"}}]})
    );
    assert_eq!(refusal.http_status_hint, Some(StatusCode::OK));

    let mut request = apq_request(Some(HELLO), &hash);
    persisted
        .resolve(&mut request, &headers, &anyone())
        .await
        .unwrap();

    let mut request = apq_request(None, &hash);
    persisted
        .resolve(&mut request, &headers, &anyone())
        .await
        .unwrap();
    assert_eq!(request.query.as_deref(), Some(HELLO));
    assert_eq!(counter(&persisted, "persisted_apq_hits"), 1);
    assert_eq!(counter(&persisted, "persisted_apq_misses"), 1);
    assert_eq!(counter(&persisted, "persisted_apq_registrations"), 1);
}

#[tokio::test]
async fn a_hash_that_does_not_match_the_text_is_refused_and_nothing_is_stored() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let headers = HeaderMap::new();
    let wrong = sha256_hex("{ other }");
    let mut request = apq_request(Some(HELLO), &wrong);
    let refusal = persisted
        .resolve(&mut request, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "PERSISTED_QUERY_HASH_MISMATCH");
    assert_eq!(refusal.http_status_hint, Some(StatusCode::BAD_REQUEST));
    let mut request = apq_request(None, &wrong);
    assert!(
        persisted
            .resolve(&mut request, &headers, &anyone())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_peek_does_not_register() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let headers = HeaderMap::new();
    let hash = sha256_hex(HELLO);
    let mut request = apq_request(Some(HELLO), &hash);
    let _unsettled = persisted.peek(&mut request, &headers).await.unwrap();
    let mut request = apq_request(None, &hash);
    assert!(
        persisted
            .resolve(&mut request, &headers, &anyone())
            .await
            .is_err()
    );
    assert_eq!(counter(&persisted, "persisted_apq_registrations"), 0);
}

#[tokio::test]
async fn a_settled_peek_registers_and_counts_its_hit() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let headers = HeaderMap::new();
    let hash = sha256_hex(HELLO);
    let mut request = apq_request(Some(HELLO), &hash);
    let resolved = persisted.peek(&mut request, &headers).await.unwrap();
    persisted.settle(resolved, &request, &anyone()).await;
    let mut request = apq_request(None, &hash);
    let resolved = persisted.peek(&mut request, &headers).await.unwrap();
    assert_eq!(request.query.as_deref(), Some(HELLO));
    assert_eq!(counter(&persisted, "persisted_apq_hits"), 0);
    persisted.settle(resolved, &request, &anyone()).await;
    assert_eq!(counter(&persisted, "persisted_apq_registrations"), 1);
    assert_eq!(counter(&persisted, "persisted_apq_hits"), 1);
}

#[tokio::test]
async fn manifest_operations_are_found_by_document_id_and_by_hash() {
    let (persisted, _dir) = with_manifest(false, None);
    let headers = HeaderMap::new();
    let mut by_id = GraphQLRequest {
        document_id: Some(format!("sha256:{}", sha256_hex(HELLO))),
        ..GraphQLRequest::default()
    };
    persisted
        .resolve(&mut by_id, &headers, &anyone())
        .await
        .unwrap();
    assert_eq!(by_id.query.as_deref(), Some(HELLO));
    assert_eq!(by_id.operation_name.as_deref(), Some("Hello"));
    let mut by_hash = apq_request(None, &sha256_hex(HELLO));
    persisted
        .resolve(&mut by_hash, &headers, &anyone())
        .await
        .unwrap();
    assert_eq!(by_hash.query.as_deref(), Some(HELLO));
}

#[tokio::test]
async fn the_safelist_refuses_unknown_ids_and_free_text_unless_bypassed() {
    let (persisted, _dir) = with_manifest(true, Some("x-internal:s3cret"));
    let mut headers = HeaderMap::new();

    let mut unknown = GraphQLRequest {
        document_id: Some("nope".into()),
        ..GraphQLRequest::default()
    };
    let refusal = persisted
        .resolve(&mut unknown, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "PERSISTED_QUERY_NOT_IN_LIST");
    assert_eq!(refusal.http_status_hint, Some(StatusCode::NOT_FOUND));

    let mut free = GraphQLRequest::new("{ hello }");
    let refusal = persisted
        .resolve(&mut free, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "QUERY_NOT_IN_SAFELIST");
    assert_eq!(refusal.http_status_hint, Some(StatusCode::FORBIDDEN));

    let mut listed_text = GraphQLRequest::new(HELLO);
    assert!(
        persisted
            .resolve(&mut listed_text, &headers, &anyone())
            .await
            .is_ok()
    );

    headers.insert("x-internal", HeaderValue::from_static("wrong"));
    assert!(
        persisted
            .resolve(&mut free, &headers, &anyone())
            .await
            .is_err()
    );
    headers.insert("x-internal", HeaderValue::from_static("s3cret"));
    assert!(
        persisted
            .resolve(&mut free, &headers, &anyone())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_safelist_turns_apq_registration_off() {
    let (persisted, _dir) = with_manifest(true, None);
    let headers = HeaderMap::new();
    let text = "{ other }";
    let mut register = apq_request(Some(text), &sha256_hex(text));
    let refusal = persisted
        .resolve(&mut register, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "QUERY_NOT_IN_SAFELIST");
    let mut hash_only = apq_request(None, &sha256_hex(text));
    let refusal = persisted
        .resolve(&mut hash_only, &headers, &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "PERSISTED_QUERY_NOT_IN_LIST");
}

#[test]
fn a_safelist_without_a_manifest_is_a_configuration_error() {
    let settings = PersistedSettings {
        safelist: true,
        ..PersistedSettings::default()
    };
    assert!(matches!(
        PersistedQueries::new(settings, None),
        Err(PersistedError::SafelistWithoutManifest)
    ));
}

#[test]
fn a_bypass_header_is_name_colon_value() {
    assert!("x-tool:secret".parse::<BypassHeader>().is_ok());
    assert!("x-tool".parse::<BypassHeader>().is_err());
    assert!("x-tool:".parse::<BypassHeader>().is_err());
    assert!("bad header:v".parse::<BypassHeader>().is_err());
}

/// Registers `text` with its hash, then asks for it by hash alone: the code of the answer
/// (`None`: found).
async fn register_then_ask(
    persisted: &PersistedQueries,
    text: &str,
    registrar: &Registrar<'_>,
) -> Option<String> {
    let headers = HeaderMap::new();
    let hash = sha256_hex(text);
    let mut request = apq_request(Some(text), &hash);
    persisted
        .resolve(&mut request, &headers, registrar)
        .await
        .expect("the text runs");
    let mut request = apq_request(None, &hash);
    match persisted.resolve(&mut request, &headers, registrar).await {
        Ok(()) => None,
        Err(refusal) => Some(code(&refusal).to_owned()),
    }
}

#[tokio::test]
async fn a_text_that_does_not_validate_is_not_registered() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let junk = Registrar {
        client: "10.0.0.1",
        validates: &never,
    };
    assert_eq!(
        register_then_ask(&persisted, "{ not graphql", &junk)
            .await
            .as_deref(),
        Some("PERSISTED_QUERY_NOT_FOUND")
    );
    assert_eq!(
        counter(&persisted, "persisted_apq_refused_registrations"),
        1
    );
}

#[tokio::test]
async fn a_text_over_the_size_cap_is_not_registered() {
    let settings = PersistedSettings {
        max_registered_bytes: 32,
        ..PersistedSettings::default()
    };
    let persisted = PersistedQueries::new(settings, None).unwrap();
    let long = format!("{{ {} }}", "hello ".repeat(10));
    assert_eq!(
        register_then_ask(&persisted, &long, &anyone())
            .await
            .as_deref(),
        Some("PERSISTED_QUERY_NOT_FOUND")
    );
    assert_eq!(register_then_ask(&persisted, HELLO, &anyone()).await, None);
}

#[tokio::test]
async fn registrations_per_client_are_limited() {
    let settings = PersistedSettings {
        registrations_per_hour: 2,
        ..PersistedSettings::default()
    };
    let persisted = PersistedQueries::new(settings, None).unwrap();
    assert_eq!(
        register_then_ask(&persisted, "{ a }", &anyone()).await,
        None
    );
    assert_eq!(
        register_then_ask(&persisted, "{ b }", &anyone()).await,
        None
    );
    assert_eq!(
        register_then_ask(&persisted, "{ c }", &anyone())
            .await
            .as_deref(),
        Some("PERSISTED_QUERY_NOT_FOUND")
    );
    let other = Registrar {
        client: "10.0.0.2",
        validates: &always,
    };
    assert_eq!(register_then_ask(&persisted, "{ c }", &other).await, None);
}

#[tokio::test]
async fn with_registration_off_an_unknown_hash_is_not_supported_and_nothing_is_stored() {
    let settings = PersistedSettings {
        registration: false,
        ..PersistedSettings::default()
    };
    let persisted = PersistedQueries::new(settings, None).unwrap();
    assert_eq!(
        register_then_ask(&persisted, HELLO, &anyone())
            .await
            .as_deref(),
        Some("PERSISTED_QUERY_NOT_SUPPORTED")
    );
}

#[tokio::test]
async fn a_hash_that_is_not_a_sha256_is_a_bad_request() {
    let persisted = PersistedQueries::new(PersistedSettings::default(), None).unwrap();
    let mut request = apq_request(None, &"x".repeat(10_000));
    let refusal = persisted
        .resolve(&mut request, &HeaderMap::new(), &anyone())
        .await
        .unwrap_err();
    assert_eq!(code(&refusal), "BAD_REQUEST");
}
