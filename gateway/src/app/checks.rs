//! What a gateway adds to `/ready`: `supergraph` (one is loaded) and `subgraph:NAME` (each
//! subgraph reached over HTTP answers at `/health`).

use std::sync::Arc;

use gantry_kit::server::readiness::{CheckFuture, CheckResult, ReadinessCheck};
use serde_json::json;

use crate::Gateway;

/// `supergraph`: ready only with one loaded.
#[derive(Debug)]
pub(crate) struct SupergraphCheck(pub Arc<Gateway>);

impl ReadinessCheck for SupergraphCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let subgraphs = self.0.supergraph().subgraph_urls().len();
            vec![CheckResult::reported(
                "supergraph",
                json!({ "status": "ok", "subgraphs": subgraphs }),
            )]
        })
    }
}

/// `subgraph:NAME`: ready only while each subgraph's `/health` answers.
#[derive(Debug)]
pub(crate) struct SubgraphHealthCheck {
    /// Name and `/health` URL of each subgraph.
    pub subgraphs: Vec<(String, String)>,
    /// A client trusting the subgraphs' CA, with a short timeout.
    pub client: reqwest::Client,
}

impl ReadinessCheck for SubgraphHealthCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(self.subgraphs.len());
            for (name, url) in &self.subgraphs {
                let up =
                    matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success());
                results.push(CheckResult {
                    name: format!("subgraph:{name}"),
                    body: json!({ "status": if up { "ok" } else { "down" } }),
                    failure: (!up).then(|| format!("subgraph {name} does not answer at {url}")),
                });
            }
            results
        })
    }
}

/// A subgraph's `/health` URL: the origin of its GraphQL URL.
pub(crate) fn health_url(graphql_url: &str) -> String {
    match reqwest::Url::parse(graphql_url).and_then(|url| url.join("/health")) {
        Ok(url) => url.to_string(),
        Err(_) => format!("{}/health", graphql_url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subgraphs_health_is_at_the_root_of_its_origin() {
        assert_eq!(
            health_url("http://users:4001/graphql"),
            "http://users:4001/health"
        );
        assert_eq!(
            health_url("https://api.example.com/users/graphql"),
            "https://api.example.com/health"
        );
    }
}
