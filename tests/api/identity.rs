//! Identity providers through the real binary: a gateway trusting two external providers
//! (RS256 and ES256 keys behind one JWKS, EdDSA behind another) besides Gantry's own
//! tokens, in front of a subgraph that shows what it received. The test makes the keys,
//! serves the JWKS on a local HTTP server, and signs the tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use axum::http::HeaderMap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::edge::key_file;
use crate::helpers::{Process, eventually, start};

/// A key the test signs with, and its public half as a JWK.
#[derive(Clone)]
pub struct TestKey {
    pub algorithm: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Jwk,
}

impl TestKey {
    fn new(algorithm: Algorithm, kid: &str, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self::with_jwk(algorithm, kid, encoding, jwk)
    }

    fn with_jwk(algorithm: Algorithm, kid: &str, encoding: EncodingKey, jwk: Jwk) -> Self {
        Self {
            algorithm,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    pub fn rsa(kid: &str) -> Self {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        Self::new(
            Algorithm::RS256,
            kid,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
    }

    pub fn ec(kid: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::new(
            Algorithm::ES256,
            kid,
            EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
    }

    pub fn ed(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let public = gantry_kit::keys::PublicKey {
            kid: kid.to_owned(),
            x: base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                key.verifying_key().as_bytes(),
            ),
        };
        Self::with_jwk(
            Algorithm::EdDSA,
            kid,
            EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            public.to_jwk(),
        )
    }

    /// A token with `claims`, `exp` an hour away unless given.
    pub fn sign(&self, claims: Value) -> String {
        let mut claims = claims;
        let now = chrono::Utc::now().timestamp();
        claims
            .as_object_mut()
            .unwrap()
            .entry("exp")
            .or_insert(json!(now + 3600));
        claims
            .as_object_mut()
            .unwrap()
            .insert("iat".into(), json!(now));
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A JWKS document on a local HTTP server, whose keys the test can change, counting the
/// fetches.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    keys: Arc<RwLock<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn serving(keys: &[&TestKey]) -> Self {
        let keys = Arc::new(RwLock::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<Jwk>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get({
                let (keys, fetches) = (keys.clone(), fetches.clone());
                move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet {
                        keys: keys.read().unwrap().clone(),
                    };
                    async move { axum::Json(set) }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{address}/.well-known/jwks.json"),
            keys,
            fetches,
        }
    }

    /// Publishes `keys` instead of the current ones (a key rotation).
    pub fn rotate(&self, keys: &[&TestKey]) {
        *self.keys.write().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

struct Echo;

#[Object(name = "Query")]
impl Echo {
    /// `name: value` of the headers the subgraph's request carried, sorted.
    async fn headers_seen(&self, ctx: &Context<'_>) -> Vec<String> {
        let headers = ctx.data_unchecked::<HeaderMap>();
        let mut seen: Vec<String> = headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        seen.sort();
        seen
    }
}

/// Serves a subgraph built from `query` whose resolvers see the request's headers.
pub async fn subgraph<Q: async_graphql::ObjectType + 'static>(query: Q) -> String {
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

/// A gateway over `subgraph_url` with these identity settings (and header rules, if any);
/// Gantry's own key is the one in `dir`.
pub async fn gateway(
    dir: &tempfile::TempDir,
    subgraph_url: &str,
    auth: &str,
    headers: Option<&str>,
) -> Process {
    let auth_file = dir.path().join("auth.yaml");
    std::fs::write(&auth_file, auth).unwrap();
    let data = dir.path().display().to_string();
    let key = key_file(dir.path());
    let subgraph = format!("accounts={subgraph_url}");
    let auth_path = auth_file.display().to_string();
    let mut args = vec![
        "gateway",
        "--subgraph",
        subgraph.as_str(),
        "--auth-config",
        auth_path.as_str(),
    ];
    let headers_path = headers.map(|rules| {
        let file = dir.path().join("headers.yaml");
        std::fs::write(&file, rules).unwrap();
        file.display().to_string()
    });
    if let Some(path) = &headers_path {
        args.extend(["--headers-config", path.as_str()]);
    }
    start(
        &args,
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str()),
        ],
    )
    .await
}

/// POSTs `query` with these headers; the status and the JSON body.
pub async fn ask(gantry: &Process, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .json(&json!({ "query": query }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// What the subgraph saw for a request with this token, or the gateway's refusal.
async fn seen_with(gantry: &Process, token: &str) -> Result<Vec<String>, (u16, String)> {
    let (status, body) = ask(
        gantry,
        "{ headersSeen }",
        &[("authorization", &bearer(token))],
    )
    .await;
    match body["data"]["headersSeen"].as_array() {
        Some(seen) => Ok(seen
            .iter()
            .map(|line| line.as_str().unwrap().to_owned())
            .collect()),
        None => Err((
            status,
            format!(
                "{} {}",
                body["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or(""),
                body["errors"][0]["message"].as_str().unwrap_or("")
            ),
        )),
    }
}

const ACME: &str = "https://acme.example/";
const OKTA: &str = "https://okta.example/oauth2/default";

fn settings(acme: &JwksServer, okta: &JwksServer) -> String {
    format!(
        "
token:
  cookie: access_token
providers:
  - name: acme
    jwks_url: {acme}
    issuers: ['{ACME}']
    audiences: [api://gantry]
    algorithms: [RS256, ES256]
  - name: okta
    jwks_url: {okta}
    issuers: ['{OKTA}']
    audiences: [gantry-api, gantry-web]
    algorithms: [EdDSA]
    leeway_secs: 30
    scopes_claim: scp
",
        acme = acme.url,
        okta = okta.url
    )
}

#[tokio::test]
async fn tokens_of_every_provider_and_algorithm_are_accepted_and_bad_ones_refused() {
    let (rsa, ec, stray_ed) = (
        TestKey::rsa("acme-rsa"),
        TestKey::ec("acme-ec"),
        TestKey::ed("acme-ed"),
    );
    let okta_ed = TestKey::ed("okta-ed");
    let acme = JwksServer::serving(&[&rsa, &ec, &stray_ed]).await;
    let okta = JwksServer::serving(&[&okta_ed]).await;
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(
        &dir,
        &subgraph(Echo).await,
        &settings(&acme, &okta),
        Some("all:\n  - insert: { name: x-user-id, from_claim: sub }\n"),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let acme_claims = |sub: &str| json!({ "iss": ACME, "aud": "api://gantry", "sub": sub });

    let by_rsa = seen_with(&gantry, &rsa.sign(acme_claims("alice")))
        .await
        .unwrap();
    assert!(
        by_rsa.contains(&"x-user-id: alice".to_owned()),
        "{by_rsa:?}"
    );
    assert!(
        !by_rsa.iter().any(|line| line.starts_with("authorization:")),
        "an external token stays at the gateway: {by_rsa:?}"
    );
    let by_ec = seen_with(&gantry, &ec.sign(acme_claims("bob")))
        .await
        .unwrap();
    assert!(by_ec.contains(&"x-user-id: bob".to_owned()), "{by_ec:?}");
    let okta_claims =
        json!({ "iss": OKTA, "aud": ["other", "gantry-web"], "sub": "carol", "exp": now - 10 });
    let within_skew = seen_with(&gantry, &okta_ed.sign(okta_claims))
        .await
        .unwrap();
    assert!(
        within_skew.contains(&"x-user-id: carol".to_owned()),
        "{within_skew:?}"
    );

    let refusals = [
        (
            rsa.sign(
                json!({ "iss": "https://evil.example/", "aud": "api://gantry", "sub": "eve" }),
            ),
            "issued by someone else",
        ),
        (
            rsa.sign(json!({ "iss": ACME, "aud": "api://elsewhere", "sub": "eve" })),
            "meant for another audience",
        ),
        (
            stray_ed.sign(acme_claims("eve")),
            "signature algorithm is not allowed",
        ),
        (
            okta_ed
                .sign(json!({ "iss": OKTA, "aud": "gantry-api", "sub": "dave", "exp": now - 120 })),
            "has expired",
        ),
        (
            TestKey::ed("unpublished")
                .sign(json!({ "iss": OKTA, "aud": "gantry-api", "sub": "eve" })),
            "unknown key",
        ),
        (
            rsa.sign(json!({ "iss": ACME, "aud": "api://gantry" })),
            "names no subject",
        ),
    ];
    for (token, why) in refusals {
        let (status, message) = seen_with(&gantry, &token).await.unwrap_err();
        assert_eq!(status, 401, "{why}: {message}");
        assert!(message.starts_with("UNAUTHENTICATED"), "{why}: {message}");
        assert!(message.contains(why), "{why}: {message}");
    }
}

#[tokio::test]
async fn gantrys_own_tokens_stay_accepted_and_a_token_may_come_in_a_cookie() {
    let rsa = TestKey::rsa("acme-rsa");
    let acme = JwksServer::serving(&[&rsa]).await;
    let okta = JwksServer::serving(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let gantry = gateway(&dir, &subgraph(Echo).await, &settings(&acme, &okta), None).await;
    let own = gantry_kit::jwt::TokenSigner::new(
        gantry_kit::keys::SigningKey::from_pem(
            &std::fs::read_to_string(key_file(dir.path())).unwrap(),
        )
        .unwrap(),
        gantry_kit::jwt::JwtSettings::default(),
    )
    .sign(uuid::Uuid::now_v7(), uuid::Uuid::now_v7())
    .unwrap();

    let by_header = seen_with(&gantry, &own).await.unwrap();
    assert!(
        by_header.contains(&format!("authorization: Bearer {own}")),
        "{by_header:?}"
    );

    let cookie = format!("theme=dark; access_token={own}");
    let (_, body) = ask(&gantry, "{ headersSeen }", &[("cookie", &cookie)]).await;
    let seen = body["data"]["headersSeen"].as_array().unwrap();
    assert!(
        seen.contains(&json!(format!("authorization: Bearer {own}"))),
        "a Gantry token from the cookie reaches the subgraphs as a bearer token: {body}"
    );
    let external = rsa.sign(json!({ "iss": ACME, "aud": "api://gantry", "sub": "alice" }));
    let (status, body) = ask(
        &gantry,
        "{ headersSeen }",
        &[("cookie", &format!("access_token={external}"))],
    )
    .await;
    assert_eq!(
        (status, body["errors"].clone()),
        (200, Value::Null),
        "{body}"
    );

    let forged = format!("access_token={}x", &own[..own.len() - 1]);
    let (status, body) = ask(&gantry, "{ headersSeen }", &[("cookie", &forged)]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_jwks_again_and_a_rotated_key_is_picked_up() {
    let (old, new) = (TestKey::rsa("2024"), TestKey::rsa("2025"));
    let eager = JwksServer::serving(&[&old]).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = format!(
        "providers:\n  - {{ name: eager, jwks_url: '{}', issuers: ['{ACME}'], min_refresh_interval_secs: 0, refresh_interval_secs: 0 }}\n",
        eager.url
    );
    let gantry = gateway(&dir, &subgraph(Echo).await, &auth, None).await;
    let claims = json!({ "iss": ACME, "sub": "alice" });
    let token = new.sign(claims.clone());
    assert_eq!(eager.fetches(), 1, "fetched once at start");

    let (status, message) = seen_with(&gantry, &token).await.unwrap_err();
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("unknown key"), "{message}");
    assert_eq!(eager.fetches(), 2, "the unknown kid fetched the JWKS again");

    eager.rotate(&[&new]);
    seen_with(&gantry, &token)
        .await
        .expect("the rotated key verifies");
    assert_eq!(eager.fetches(), 3);
    seen_with(&gantry, &token).await.expect("still verifies");
    assert_eq!(eager.fetches(), 3, "a known key needs no fetch");
}

#[tokio::test]
async fn unknown_key_ids_cannot_flood_the_provider_and_the_schedule_still_refreshes() {
    let (old, new) = (TestKey::ec("old"), TestKey::ec("new"));
    let jwks = JwksServer::serving(&[&old]).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = format!(
        "providers:\n  - {{ name: calm, jwks_url: '{}', issuers: ['{ACME}'], min_refresh_interval_secs: 3600, refresh_interval_secs: 1 }}\n",
        jwks.url
    );
    let gantry = gateway(&dir, &subgraph(Echo).await, &auth, None).await;
    let fetched_at_start = jwks.fetches();
    let forged = TestKey::ec("forged").sign(json!({ "iss": ACME, "sub": "mallory" }));
    for _ in 0..5 {
        let (status, _) = seen_with(&gantry, &forged).await.unwrap_err();
        assert_eq!(status, 401);
    }
    assert!(
        jwks.fetches() <= fetched_at_start + 1,
        "unknown kids did not fetch: {} fetches",
        jwks.fetches()
    );

    jwks.rotate(&[&new]);
    let token = new.sign(json!({ "iss": ACME, "sub": "alice" }));
    eventually(
        "the scheduled refresh picks up the new key",
        Duration::from_secs(20),
        || async { seen_with(&gantry, &token).await.ok() },
    )
    .await;
}

#[tokio::test]
async fn malformed_identity_settings_refuse_to_start_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.yaml");
    std::fs::write(
        &file,
        "providers: [{ name: a, jwks_url: 'https://idp.example/keys', issuers: [x], algorithms: [HS256] }]\n",
    )
    .unwrap();
    let key = key_file(dir.path());
    let output = crate::helpers::run(
        &[
            "gateway",
            "--supergraph",
            "/nonexistent",
            "--auth-config",
            file.to_str().unwrap(),
        ],
        &[("GANTRY_JWT_PRIVATE_KEY_FILE", key.as_str())],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HS256"), "{stderr}");
}
