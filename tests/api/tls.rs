//! TLS and HTTP/2 through the real binary, with a private CA the test makes: a gateway
//! serves clients over HTTPS (HTTP/2 by ALPN, HTTP/1.1 for clients that ask for it); it
//! reaches subgraphs over HTTPS when that CA is configured, and refuses to trust them
//! otherwise; its readiness probes, the JWKS and the revocation list trust the same CA; it
//! speaks HTTP/2 without TLS (h2c) to subgraphs when told to. Shared state reaches a Redis
//! that speaks only TLS through a `rediss://` URL, trusting the same CA.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use serde_json::{Value, json};
use tokio_rustls::rustls;

use crate::edge::key_file;
use crate::helpers::{Process, eventually, free_port, run, start};

struct Hello;

#[Object(name = "Query")]
impl Hello {
    async fn hello(&self) -> String {
        "over tls".into()
    }
}

/// A private CA (its PEM) and a certificate for 127.0.0.1 it signed, with its key.
fn private_ca() -> (String, rustls::pki_types::CertificateDer<'static>, KeyPair) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.der().clone(), leaf_key)
}

/// Serves the `hello` subgraph over HTTPS (HTTP/1.1 or HTTP/2 by ALPN) on a free port.
async fn https_subgraph(cert: rustls::pki_types::CertificateDer<'static>, key: &KeyPair) -> String {
    let schema = Schema::build(Hello, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let router = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .route(
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
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    format!("https://{address}/graphql")
}

#[tokio::test]
async fn a_gateway_reaches_an_https_subgraph_whose_certificate_chains_to_the_configured_ca() {
    let (ca_pem, cert, key) = private_ca();
    let subgraph = format!("hello={}", https_subgraph(cert, &key).await);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let data = dir.path().display().to_string();
    let signing_key = key_file(dir.path());
    let env = [
        ("GANTRY_DATA_DIR", data.as_str()),
        ("GANTRY_JWT_PRIVATE_KEY_FILE", signing_key.as_str()),
        ("GANTRY_STARTUP_WAIT_SECS", "1"),
    ];

    let untrusting = run(&["gateway", "--subgraph", &subgraph], &env).await;
    let gantry = start(
        &[
            "gateway",
            "--subgraph",
            &subgraph,
            "--tls-ca-file",
            ca_file.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    let answer: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .json(&json!({ "query": "{ hello }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let refusal = String::from_utf8_lossy(&untrusting.stderr);
    assert!(!untrusting.status.success(), "{refusal}");
    assert!(refusal.contains("certificate"), "{refusal}");
    assert_eq!(answer, json!({ "data": { "hello": "over tls" } }));
    let ready = reqwest::get(format!("http://{}/ready", gantry.address))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
}

#[tokio::test]
async fn shared_state_reaches_a_redis_that_speaks_only_tls() {
    let (ca_pem, cert, key) = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca_file = write("ca.pem", &ca_pem);
    let cert_file = write("redis.pem", &pem_certificate(&cert));
    let key_file_path = write("redis-key.pem", &key.serialize_pem());
    let ca_file_setting = ca_file.clone();
    let port = free_port();
    let _redis = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file_path,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let subgraph = format!("hello={}", crate::edge::toy_subgraph(Hello).await);
    let data = dir.path().display().to_string();
    let signing_key = key_file(dir.path());
    // The test's CA is not among the public roots: the connection trusts it because it is
    // configured.
    let redis_url = format!("rediss://127.0.0.1:{port}/");
    let gantry = start(
        &["gateway", "--subgraph", &subgraph],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", signing_key.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("GANTRY_TLS_CA_FILE", ca_file_setting.as_str()),
        ],
    )
    .await;

    let checks = eventually(
        "Redis over TLS answers",
        std::time::Duration::from_secs(20),
        || async {
            let ready: Value = reqwest::get(format!("http://{}/ready", gantry.address))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (ready["checks"]["redis"]["status"] == "ok").then_some(ready)
        },
    )
    .await;
    assert_eq!(checks["checks"]["redis"]["status"], "ok");
}

fn pem_certificate(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The CA's PEM file, and a certificate for 127.0.0.1 it signed with its key, in `dir`.
struct ServerFiles {
    ca: String,
    cert: String,
    key: String,
    ca_pem: String,
}

fn server_files(dir: &std::path::Path) -> ServerFiles {
    let (ca_pem, cert, key) = private_ca();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    ServerFiles {
        ca: write("ca.pem", &ca_pem),
        cert: write("server.pem", &pem_certificate(&cert)),
        key: write("server-key.pem", &key.serialize_pem()),
        ca_pem,
    }
}

/// A client that trusts the test's CA; `http1` keeps it to HTTP/1.1.
fn trusting(ca_pem: &str, http1: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().unwrap()
}

#[tokio::test]
async fn the_gateway_serves_https_with_http2_by_alpn_and_http1_to_clients_that_ask() {
    let dir = tempfile::tempdir().unwrap();
    let files = server_files(dir.path());
    let subgraph = format!("hello={}", crate::edge::toy_subgraph(Hello).await);
    let data = dir.path().display().to_string();
    let signing_key = key_file(dir.path());
    let gantry = start(
        &["gateway", "--subgraph", &subgraph],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", signing_key.as_str()),
            ("GANTRY_TLS_CERT", files.cert.as_str()),
            ("GANTRY_TLS_KEY", files.key.as_str()),
        ],
    )
    .await;
    let url = format!("https://{}/graphql", gantry.address);

    let mut answers = Vec::new();
    for http1 in [false, true] {
        let response = trusting(&files.ca_pem, http1)
            .post(&url)
            .json(&json!({ "query": "{ hello }" }))
            .send()
            .await
            .unwrap();
        let version = response.version();
        let body: Value = response.json().await.unwrap();
        answers.push((version, body));
    }
    let untrusting = reqwest::Client::new().post(&url).send().await;
    let plain = reqwest::Client::new()
        .post(format!("http://{}/graphql", gantry.address))
        .json(&json!({ "query": "{ hello }" }))
        .send()
        .await;

    let hello = json!({ "data": { "hello": "over tls" } });
    assert_eq!(
        answers,
        vec![
            (reqwest::Version::HTTP_2, hello.clone()),
            (reqwest::Version::HTTP_11, hello)
        ]
    );
    let refusal = format!("{:?}", untrusting.unwrap_err()).to_lowercase();
    assert!(refusal.contains("unknownissuer"), "{refusal}");
    assert!(plain.is_err(), "plain HTTP is not answered: {plain:?}");
}

/// The users subgraph's access-log lines for `/graphql`.
fn graphql_requests(process: &Process) -> Vec<String> {
    process
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(r#""path":"/graphql""#))
        .cloned()
        .collect()
}

/// Signs up through the gateway, then reads the account back with the token it got: the
/// gateway verified it with the users subgraph's JWKS.
async fn sign_up_and_read_back(gateway: &str) -> Value {
    let client = reqwest::Client::new();
    let registered: Value = client
        .post(format!("http://{gateway}/graphql"))
        .json(&json!({ "query": r#"mutation { register(input: { username: "tess", email: "tess@example.com", password: "correct horse battery", displayName: "Tess" }) { accessToken } }"# }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("register: {registered}"))
        .to_owned();
    client
        .post(format!("http://{gateway}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ me { username } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_gateway_reaches_a_gantry_subgraph_over_https_and_trusts_its_jwks_by_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let files = server_files(dir.path());
    let users_dir = tempfile::tempdir().unwrap();
    let users_data = users_dir.path().display().to_string();
    let users = start(
        &["subgraph", "users"],
        &[
            ("GANTRY_DATA_DIR", users_data.as_str()),
            ("GANTRY_TLS_CERT", files.cert.as_str()),
            ("GANTRY_TLS_KEY", files.key.as_str()),
        ],
    )
    .await;
    let subgraph = format!("users=https://{}/graphql", users.address);
    let gateway_data = dir.path().display().to_string();
    let gateway = start(
        &["gateway", "--subgraph", &subgraph],
        &[
            ("GANTRY_DATA_DIR", gateway_data.as_str()),
            ("GANTRY_TLS_CA_FILE", files.ca.as_str()),
        ],
    )
    .await;

    let me = sign_up_and_read_back(&gateway.address).await;
    let ready = reqwest::get(format!("http://{}/ready", gateway.address))
        .await
        .unwrap();

    assert_eq!(me, json!({ "data": { "me": { "username": "tess" } } }));
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let requests = graphql_requests(&users);
    assert!(
        requests
            .iter()
            .any(|line| line.contains(r#""version":"HTTP/2.0""#)),
        "the subgraph heard HTTP/2 by ALPN: {requests:#?}"
    );
}

#[tokio::test]
async fn with_subgraph_http2_the_gateway_speaks_h2c_to_subgraphs() {
    let users_dir = tempfile::tempdir().unwrap();
    let users_data = users_dir.path().display().to_string();
    let users = start(
        &["subgraph", "users"],
        &[("GANTRY_DATA_DIR", users_data.as_str())],
    )
    .await;
    let subgraph = format!("users=http://{}/graphql", users.address);
    let mut versions = Vec::new();
    for flags in [&[][..], &["--subgraph-http2"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let mut args = vec!["gateway", "--subgraph", &subgraph];
        args.extend_from_slice(flags);
        let gateway = start(&args, &[("GANTRY_DATA_DIR", data.as_str())]).await;
        let request_id = format!("h2c-{}", flags.len());
        let answer: Value = reqwest::Client::new()
            .post(format!("http://{}/graphql", gateway.address))
            .header("x-request-id", &request_id)
            .json(&json!({ "query": r#"{ userByUsername(username: "nobody") { id } }"# }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer, json!({ "data": { "userByUsername": null } }));
        let needle = format!(r#""request_id":"{request_id}""#);
        let line = eventually(
            "the subgraph logs the request",
            std::time::Duration::from_secs(10),
            || {
                let line = graphql_requests(&users)
                    .into_iter()
                    .find(|line| line.contains(&needle));
                async move { line }
            },
        )
        .await;
        let log: Value = serde_json::from_str(&line).unwrap();
        versions.push(log["fields"]["version"].clone());
    }

    assert_eq!(versions, vec![json!("HTTP/1.1"), json!("HTTP/2.0")]);
}
