//! The response cache's in-flight sharing around an invalidation: a request that arrives
//! after a change never gets the answer of one that began reading before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gantry_kit::invalidation::InvalidationSink;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::cache::backend::CacheBackend;
use crate::cache::{CacheSettings, Caching, Operation};
use crate::testing::*;
use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};
use crate::{Gateway, GatewayConfig, GraphQLRequest, RequestContext, Supergraph, Transports};

const ADA: &str = "0192f0c4-7b3e-7c3a-9f00-00000000000a";

/// The users subgraph, holding each answer until the test lets it through; its name for
/// Ada is "Ada" until the test renames her.
struct GatedUsers {
    gate: Semaphore,
    received: AtomicUsize,
    renamed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SubgraphTransport for GatedUsers {
    async fn execute(&self, _: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        // What the subgraph reads is what it has when the request arrives.
        let name = if self.renamed.load(Ordering::SeqCst) {
            "Ada Lovelace"
        } else {
            "Ada"
        };
        self.received.fetch_add(1, Ordering::SeqCst);
        let _pass = self.gate.acquire().await;
        SubgraphResponse::from_json(json!({"data": {"user": {"name": name}}}))
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_request_after_an_invalidation_does_not_join_a_read_begun_before_it() {
    let users = Arc::new(GatedUsers {
        gate: Semaphore::new(0),
        received: AtomicUsize::new(0),
        renamed: false.into(),
    });
    let supergraph = Supergraph::compose(
        &[subgraph("users", USERS_SDL), subgraph("posts", POSTS_SDL)],
        crate::SupergraphOptions::default(),
    )
    .expect("composes");
    let transports = Transports::new()
        .with("users", users.clone())
        .with("posts", Arc::new(MockSubgraph::new()));
    let gateway = Arc::new(Gateway::new(
        supergraph,
        transports,
        GatewayConfig::default(),
    ));
    let settings = CacheSettings::default();
    let backend = CacheBackend::new(None, settings.capacity, settings.max_ttl);
    let caching = Arc::new(Caching::new(settings, backend, Arc::default()));
    let query = "query($id: ID!) { user(id: $id) { name } }";
    let run = |caching: Arc<Caching>| {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let request = GraphQLRequest::new(query).with_variables(json!({ "id": ADA }));
            let runtime = gateway.runtime();
            let prepared = runtime.prepare(query, None).await.expect("prepares");
            let operation = Operation {
                gateway,
                runtime,
                prepared,
                denied: None,
            };
            caching
                .execute(operation, request, RequestContext::default(), None)
                .await
                .body
        })
    };

    let before = run(caching.clone());
    wait_until("the first read reached the subgraph", || {
        users.received.load(Ordering::SeqCst) == 1
    })
    .await;
    users.renamed.store(true, Ordering::SeqCst);
    let ada = Uuid::parse_str(ADA).expect("a UUID");
    caching.invalidator().invalidate(vec![ada]).await;
    let after = run(caching.clone());
    wait_until("the second read reached the subgraph", || {
        users.received.load(Ordering::SeqCst) == 2
    })
    .await;
    users.gate.add_permits(2);

    let name = |body: Value| body["data"]["user"]["name"].clone();
    assert_eq!(name(before.await.expect("runs")), "Ada");
    assert_eq!(name(after.await.expect("runs")), "Ada Lovelace");
}
