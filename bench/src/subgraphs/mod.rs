//! `gantry-bench subgraphs`: four in-memory federation subgraphs in one process, each on its
//! own port, in the shape of the public gateway benchmarks (accounts, products, reviews,
//! inventory): entities with `@key`, `@shareable` fields, a `@requires`/`@external` field
//! (inventory's `shippingEstimate` from price and weight), and lists on every level. With
//! no database behind them, what a deep query through all four costs is the gateway's own
//! work and the subgraphs' GraphQL execution.
//!
//! Each answers `POST /graphql`, `GET /health` (which gateways' readiness checks ask) and
//! `GET /.well-known/jwks.json` (an empty key set: the benchmark's requests are anonymous,
//! and a gateway asked to verify tokens needs somewhere to read keys from).

pub mod accounts;
pub mod catalogue;
pub mod inventory;
pub mod products;
pub mod reviews;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use async_graphql::{ObjectType, Schema, SubscriptionType};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::{get, post_service};
use serde_json::json;

/// The subgraphs, by the names the supergraph gives them.
pub const NAMES: [&str; 4] = ["accounts", "products", "reviews", "inventory"];

/// The router of one subgraph, by name.
pub fn router(name: &str) -> anyhow::Result<Router> {
    Ok(match name {
        "accounts" => with_schema(accounts::schema()),
        "products" => with_schema(products::schema()),
        "reviews" => with_schema(reviews::schema()),
        "inventory" => with_schema(inventory::schema()),
        other => bail!("no subgraph named `{other}` (the names: {NAMES:?})"),
    })
}

fn with_schema<Q, M, S>(schema: Schema<Q, M, S>) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Router::new()
        .route("/graphql", post_service(GraphQL::new(schema)))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/.well-known/jwks.json",
            get(|| async { axum::Json(json!({ "keys": [] })) }),
        )
}

/// Serves each `(name, address)` until `shutdown` completes.
pub async fn serve(
    listen: Vec<(String, SocketAddr)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if listen.is_empty() {
        bail!("give --listen NAME=ADDRESS for at least one of {NAMES:?}");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (name, address) in listen {
        let app = router(&name)?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} for {name}"))?;
        eprintln!(
            "subgraphs: {name} at http://{}/graphql",
            listener.local_addr()?
        );
        let mut stopped = stopped.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
    }
    shutdown.await;
    let _ = stop.send(true);
    while let Some(joined) = servers.join_next().await {
        joined??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn spawn(name: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router(name).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/graphql")
    }

    async fn query(url: &str, query: &str) -> Value {
        reqwest::Client::new()
            .post(url)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn each_subgraph_publishes_its_federation_directives() {
        let mut sdls = Vec::new();
        for name in NAMES {
            let url = spawn(name).await;
            let body = query(&url, "{ _service { sdl } }").await;
            sdls.push(body["data"]["_service"]["sdl"].as_str().unwrap().to_owned());
        }
        let [accounts, products, reviews, inventory] = &sdls[..] else {
            unreachable!()
        };
        assert!(
            accounts.contains("type User @key(fields: \"id\")"),
            "{accounts}"
        );
        assert!(
            accounts.contains("username: String @shareable"),
            "{accounts}"
        );
        assert!(
            products.contains("type Product @key(fields: \"upc\")"),
            "{products}"
        );
        assert!(
            reviews.contains("type Review @key(fields: \"id\")"),
            "{reviews}"
        );
        assert!(reviews.contains("username: String @shareable"), "{reviews}");
        assert!(
            inventory.contains("shippingEstimate: Int @requires(fields: \"price weight\")"),
            "{inventory}"
        );
        assert!(inventory.contains("price: Int @external"), "{inventory}");
    }

    #[tokio::test]
    async fn the_shipping_estimate_is_computed_from_the_price_and_weight_handed_in() {
        let url = spawn("inventory").await;
        let body = query(
            &url,
            r#"{ _entities(representations: [
                {__typename: "Product", upc: "1", price: 749, weight: 180},
                {__typename: "Product", upc: "2", price: 1450, weight: 2200}
            ]) { ... on Product { upc inStock shippingEstimate } } }"#,
        )
        .await;
        assert_eq!(
            body["data"]["_entities"],
            json!([
                { "upc": "1", "inStock": true, "shippingEstimate": 90 },
                { "upc": "2", "inStock": false, "shippingEstimate": 0 }
            ])
        );
    }

    #[tokio::test]
    async fn an_unknown_subgraph_name_is_refused() {
        let err = router("payments").unwrap_err();
        assert!(err.to_string().contains("no subgraph named `payments`"));
    }
}
