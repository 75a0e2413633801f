//! TLS through the real binary: a gateway reaches a subgraph served over HTTPS with a
//! certificate from a private CA the test makes, when that CA is configured, and refuses to
//! trust it otherwise; its readiness probes trust the same CA. Shared state reaches a
//! Redis that speaks only TLS through a `rediss://` URL.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use serde_json::{Value, json};
use tokio_rustls::rustls;

use crate::edge::key_file;
use crate::helpers::{eventually, free_port, run, start};

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
    // The test's CA is not among the public roots Redis connections trust: `#insecure`
    // keeps the encryption and skips that check.
    let redis_url = format!("rediss://127.0.0.1:{port}/#insecure");
    let gantry = start(
        &["gateway", "--subgraph", &subgraph],
        &[
            ("GANTRY_DATA_DIR", data.as_str()),
            ("GANTRY_JWT_PRIVATE_KEY_FILE", signing_key.as_str()),
            ("REDIS_URL", redis_url.as_str()),
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
