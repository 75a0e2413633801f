//! Subscriptions to a subgraph served over mutual TLS: its `https://` URL is subscribed to
//! over `wss://` with the TLS settings of every subgraph client (the configured CA and
//! client certificate), and a gateway that does not trust the subgraph's certificate ends
//! the subscription with an error that says so.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use gantry_gateway::app::{GatewaySettings, SupergraphSource};
use gantry_gateway::compose_supergraph_sdl;
use gantry_gateway::transport::{ClientTls, ClientTlsFiles, HttpTransportConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use serde_json::json;
use tokio_rustls::rustls;

use crate::subscriptions::{
    Gateway, REVIEW_ADDED, WsClient, gateway_with, review, subgraphs_serving_reviews_with,
};

/// A private CA (its PEM), a TLS acceptor for 127.0.0.1 with a certificate it signed that
/// asks every client for a certificate it signed too (mutual TLS), and such a client
/// certificate and its key (PEM).
struct PrivateCa {
    pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
    client_cert: String,
    client_key: String,
}

fn private_ca() -> PrivateCa {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf parameters");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf_key = KeyPair::generate().expect("a leaf key");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("a leaf certificate");
    let client_key = KeyPair::generate().expect("a client key");
    let client = CertificateParams::new(vec!["gateway".to_owned()])
        .expect("client parameters")
        .signed_by(&client_key, &ca, &ca_key)
        .expect("a client certificate");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("the CA as a root");
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("a client verifier");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(clients)
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("a server config");
    PrivateCa {
        pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// Subgraph clients that trust the CA in `ca_pem` and present `client` (certificate and
/// key PEM), through files in `dir`.
fn trusting(dir: &Path, ca_pem: &str, client: (&str, &str)) -> HttpTransportConfig {
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path
    };
    HttpTransportConfig {
        tls: ClientTls::load(&ClientTlsFiles {
            ca_file: Some(write("ca.pem", ca_pem)),
            client_cert: Some(write("gateway.pem", client.0)),
            client_key: Some(write("gateway-key.pem", client.1)),
        })
        .expect("the TLS files load"),
        ..HttpTransportConfig::default()
    }
}

async fn subscribe(gateway: &Gateway) -> WsClient {
    let mut client = WsClient::connect(gateway, Some("graphql-transport-ws")).await;
    client.init(json!({})).await;
    client
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": REVIEW_ADDED, "variables": { "product": "p1" }
        } }))
        .await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_subgraph_is_subscribed_to_over_wss_with_the_configured_ca_and_client_cert() {
    let ca = private_ca();
    let (reviews, urls, _) = subgraphs_serving_reviews_with(Some(ca.acceptor.clone())).await;
    assert!(urls.iter().any(|url| url.url.starts_with("https://")));
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = gateway_with(
        SupergraphSource::Subgraphs(urls),
        GatewaySettings {
            subgraph_http: trusting(dir.path(), &ca.pem, (&ca.client_cert, &ca.client_key)),
            ..GatewaySettings::default()
        },
    )
    .await;

    let mut client = subscribe(&gateway).await;
    gateway.until(|s| s.upstreams() == 1).await;
    reviews.until_subscribed(1).await;
    reviews.published.send(review("r1", "p1", "u1")).ok();

    assert_eq!(
        client.receive().await,
        Ok(
            json!({ "id": "1", "type": "next", "payload": { "data": { "reviewAdded": {
            "body": "review r1", "author": { "name": "person u1" }
        } } } })
        )
    );
    client.send(json!({ "id": "1", "type": "complete" })).await;
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subgraph_whose_certificate_is_not_trusted_ends_the_subscription_with_a_clear_error() {
    let ca = private_ca();
    let other = private_ca();
    let (_reviews, _, sdls) = subgraphs_serving_reviews_with(Some(ca.acceptor)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Composed beforehand: the gateway could not fetch the SDL it does not trust either.
    let supergraph = dir.path().join("supergraph.graphql");
    std::fs::write(
        &supergraph,
        compose_supergraph_sdl(&sdls).expect("the subgraphs compose"),
    )
    .expect("the supergraph file");
    let gateway = gateway_with(
        SupergraphSource::File(supergraph),
        GatewaySettings {
            subgraph_http: trusting(
                dir.path(),
                &other.pem,
                (&other.client_cert, &other.client_key),
            ),
            ..GatewaySettings::default()
        },
    )
    .await;

    let mut client = subscribe(&gateway).await;

    let ended = client.receive().await.expect("a message");
    assert_eq!(ended["type"], "next", "{ended}");
    let error = &ended["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "SUBGRAPH_ERROR", "{ended}");
    assert_eq!(error["extensions"]["serviceName"], "reviews", "{ended}");
    assert_eq!(
        error["message"],
        "The subscription to subgraph `reviews` failed: the gateway could not connect to it \
         over TLS (its certificate is not trusted, or it refused the gateway's)"
    );
    assert_eq!(
        client.receive().await,
        Ok(json!({ "id": "1", "type": "complete" }))
    );
    gateway
        .until(|s| s.active() == 0 && s.upstreams() == 0)
        .await;
}
