//! `gantry-bench ceiling`: a bare axum handler that answers every request with the same
//! bytes. What it sustains on this machine, through the same load generator, is the ceiling
//! for `mobile-reads` answered from a cache: the cost of HTTP alone.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::any;

/// Every path, every method: `200`, `content-type: application/json`, `body`.
pub fn router(body: Vec<u8>) -> Router {
    let body = axum::body::Bytes::from(body);
    Router::new().fallback(any(move || {
        let body = body.clone();
        async move { ([(CONTENT_TYPE, "application/json")], body) }
    }))
}

pub async fn serve(
    listen: SocketAddr,
    body_file: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let body = std::fs::read(body_file)
        .with_context(|| format!("reading the body file {}", body_file.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "ceiling: answering {} bytes at http://{}/",
        body.len(),
        listener.local_addr()?
    );
    axum::serve(listener, router(body))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_gets_the_same_json_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server =
            tokio::spawn(
                async move { axum::serve(listener, router(br#"{"data":{}}"#.to_vec())).await },
            );
        let response = reqwest::get(format!("http://{address}/graphql?x=1"))
            .await
            .unwrap();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.text().await.unwrap(), r#"{"data":{}}"#);
        server.abort();
    }
}
