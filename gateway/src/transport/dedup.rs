//! In-flight de-duplication of subgraph fetches: identical concurrent query fetches (same
//! subgraph, query, variables and forwarded headers, but for the ones that name the request
//! or the client's address) share one request. Mutations always go through, each on its own:
//! the fetch's kind comes from its plan node, whatever its text looks like.
//! The answer's propagated response headers go to the request that made the fetch only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::FutureExt;

use super::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};
use crate::graphql::OperationKind;
use crate::inflight::{self, DedupMetrics, InFlight, InFlightKey};

/// Shared behind an `Arc`: every party to a shared future gets a clone of its output, and
/// the response tree is copied only when someone actually shared it.
type Outcome = Result<Arc<SubgraphResponse>, TransportError>;

/// Wraps a transport so identical concurrent query fetches share one request.
pub struct DedupTransport {
    inner: Arc<dyn SubgraphTransport>,
    inflight: InFlight<Outcome>,
    metrics: Arc<DedupMetrics>,
}

impl std::fmt::Debug for DedupTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupTransport").finish_non_exhaustive()
    }
}

impl DedupTransport {
    pub fn new(inner: Arc<dyn SubgraphTransport>, metrics: Arc<DedupMetrics>) -> Self {
        Self {
            inner,
            inflight: InFlight::default(),
            metrics,
        }
    }
}

/// Headers that differ on every request without changing its answer.
const PER_REQUEST_HEADERS: [&str; 4] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-forwarded-for",
];

fn key(request: &SubgraphRequest) -> InFlightKey {
    let variables = serde_json::to_string(&request.variables).unwrap_or_default();
    let extensions = serde_json::to_string(&request.extensions).unwrap_or_default();
    // The token, and whatever header rules send (a tenant, a locale), may change the
    // answer; the request id, trace context and client address only label the request.
    let mut headers: Vec<(&str, &[u8])> = request
        .headers
        .iter()
        .filter(|(name, _)| !PER_REQUEST_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    headers.sort_unstable();
    let headers: Vec<u8> = headers
        .into_iter()
        .flat_map(|(name, value)| [name.as_bytes(), b":", value, b"\n"])
        .flatten()
        .copied()
        .collect();
    inflight::key(&[
        request.subgraph_name.as_bytes(),
        request.query.as_bytes(),
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        variables.as_bytes(),
        extensions.as_bytes(),
        &headers,
    ])
}

#[async_trait]
impl SubgraphTransport for DedupTransport {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        if request.kind != OperationKind::Query {
            return self.inner.execute(request).await;
        }
        let key = key(&request);
        let inner = self.inner.clone();
        let led = AtomicBool::new(false);
        let outcome = self
            .inflight
            .run(key, &self.metrics, || {
                led.store(true, Ordering::Relaxed);
                async move { inner.execute(request).await.map(Arc::new) }.boxed()
            })
            .await?;
        let mut response =
            Arc::try_unwrap(outcome).unwrap_or_else(|shared| shared.as_ref().clone());
        // Response headers (a `Set-Cookie`) are the request's that made the fetch only.
        if !led.load(Ordering::Relaxed) {
            response.headers.clear();
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use reqwest::header::HeaderMap;
    use serde_json::{Map, json};

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl SubgraphTransport for Counting {
        async fn execute(&self, _: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(SubgraphResponse {
                data: Some(json!({ "ok": true })),
                ..SubgraphResponse::default()
            })
        }
    }

    fn request(query: &str) -> SubgraphRequest {
        SubgraphRequest {
            subgraph_name: "posts".into(),
            query: query.into(),
            kind: OperationKind::Query,
            entity_calls: Default::default(),
            operation_name: None,
            variables: Map::new(),
            headers: HeaderMap::new(),
            extensions: Map::new(),
            context: None,
        }
    }

    #[tokio::test]
    async fn identical_concurrent_queries_reach_the_subgraph_once() {
        let counting = Arc::new(Counting::default());
        let metrics = Arc::new(DedupMetrics::default());
        let dedup = DedupTransport::new(counting.clone(), metrics.clone());
        let results =
            futures::future::join_all((0..5).map(|_| dedup.execute(request("{ a }")))).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.shared.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_mutation_fetch_is_never_shared_whatever_its_text_begins_with() {
        let counting = Arc::new(Counting::default());
        let metrics = Arc::new(DedupMetrics::default());
        let dedup = DedupTransport::new(counting.clone(), metrics.clone());
        let mutation = || SubgraphRequest {
            kind: OperationKind::Mutation,
            ..request("  # a comment first\n{ likePost(postId: 1) { id } }")
        };
        futures::future::join_all((0..3).map(|_| dedup.execute(mutation()))).await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.shared.load(Ordering::SeqCst), 0);
    }

    fn with_headers(pairs: &[(&'static str, &'static str)]) -> SubgraphRequest {
        let mut request = request("{ a }");
        for (name, value) in pairs {
            request
                .headers
                .insert(*name, reqwest::header::HeaderValue::from_static(value));
        }
        request
    }

    #[test]
    fn fetches_differing_in_a_forwarded_header_are_not_shared() {
        let acme = key(&with_headers(&[("x-tenant", "acme")]));
        assert_ne!(acme, key(&with_headers(&[("x-tenant", "globex")])));
        assert_ne!(acme, key(&with_headers(&[])));
    }

    #[test]
    fn fetches_differing_only_in_request_labels_are_shared() {
        assert_eq!(
            key(&with_headers(&[
                ("x-request-id", "1"),
                ("x-forwarded-for", "10.0.0.1")
            ])),
            key(&with_headers(&[
                ("x-request-id", "2"),
                ("x-forwarded-for", "10.0.0.2")
            ])),
        );
    }
}
