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
                .to_json()
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

/// The users subgraph answering with a `Cache-Control` hint, so the response is stored;
/// Ada's name is whatever the test last set.
struct HintedUsers {
    name: std::sync::Mutex<&'static str>,
    received: AtomicUsize,
}

#[async_trait]
impl SubgraphTransport for HintedUsers {
    async fn execute(&self, _: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        self.received.fetch_add(1, Ordering::SeqCst);
        let name = *self.name.lock().expect("not poisoned");
        let mut response = SubgraphResponse::from_json(json!({"data": {"user": {"name": name}}}))?;
        response.cache_control = Some("public, max-age=60".into());
        Ok(response)
    }
}

/// Runs `{ user(id: Ada) { name } }` through `caching`: the body and `x-cache`.
async fn ask_for_ada(gateway: &Arc<Gateway>, caching: &Caching) -> (Value, Option<String>) {
    let query = "query($id: ID!) { user(id: $id) { name } }";
    let request = GraphQLRequest::new(query).with_variables(json!({ "id": ADA }));
    let runtime = gateway.runtime();
    let prepared = runtime.prepare(query, None).await.expect("prepares");
    let operation = Operation {
        gateway: gateway.clone(),
        runtime,
        prepared,
        denied: None,
    };
    let response = caching
        .execute(operation, request, RequestContext::default(), None)
        .await;
    let x_cache = response
        .extra_headers
        .get(crate::cache::X_CACHE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (response.to_json(), x_cache)
}

fn hinted_gateway() -> (Arc<HintedUsers>, Arc<Gateway>, Caching) {
    let users = Arc::new(HintedUsers {
        name: std::sync::Mutex::new("Ada"),
        received: AtomicUsize::new(0),
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
    (
        users,
        gateway,
        Caching::new(settings, backend, Arc::default()),
    )
}

/// The store runs after the answer went out (on this single-threaded runtime, not before
/// the test next yields); the very next identical request is a hit all the same.
#[tokio::test]
async fn the_next_identical_request_is_answered_from_the_cache_while_the_store_runs_behind() {
    let (users, gateway, caching) = hinted_gateway();

    let (first, first_cache) = ask_for_ada(&gateway, &caching).await;
    let (second, second_cache) = ask_for_ada(&gateway, &caching).await;
    tokio::task::yield_now().await;
    let (third, third_cache) = ask_for_ada(&gateway, &caching).await;

    assert_eq!(first, json!({"data": {"user": {"name": "Ada"}}}));
    assert_eq!(first_cache.as_deref(), Some("MISS"));
    assert_eq!(second, first);
    assert_eq!(second_cache.as_deref(), Some("HIT"));
    assert_eq!(third, first);
    assert_eq!(
        third_cache.as_deref(),
        Some("HIT"),
        "and once the store landed"
    );
    assert_eq!(users.received.load(Ordering::SeqCst), 1);
}

/// A response still on its way into the cache is not served after an invalidation.
#[tokio::test]
async fn a_response_waiting_to_be_stored_is_not_served_after_an_invalidation() {
    let (users, gateway, caching) = hinted_gateway();

    let (first, _) = ask_for_ada(&gateway, &caching).await;
    *users.name.lock().expect("not poisoned") = "Ada Lovelace";
    let ada = Uuid::parse_str(ADA).expect("a UUID");
    caching.invalidator().invalidate(vec![ada]).await;
    let (second, second_cache) = ask_for_ada(&gateway, &caching).await;
    tokio::task::yield_now().await;
    let (third, third_cache) = ask_for_ada(&gateway, &caching).await;

    assert_eq!(first["data"]["user"]["name"], "Ada");
    assert_eq!(second["data"]["user"]["name"], "Ada Lovelace");
    assert_eq!(second_cache.as_deref(), Some("MISS"));
    assert_eq!(third["data"]["user"]["name"], "Ada Lovelace");
    assert_eq!(third_cache.as_deref(), Some("HIT"));
    assert_eq!(users.received.load(Ordering::SeqCst), 2);
}

/// An invalidation of something else while the response is on its way in: the next
/// identical request waits for the write and is answered from the cache.
#[tokio::test]
async fn a_response_waiting_to_be_stored_still_answers_after_an_unrelated_invalidation() {
    let (users, gateway, caching) = hinted_gateway();

    let (first, _) = ask_for_ada(&gateway, &caching).await;
    let someone_else = Uuid::now_v7();
    caching.invalidator().invalidate(vec![someone_else]).await;
    let (second, second_cache) = ask_for_ada(&gateway, &caching).await;

    assert_eq!(second, first);
    assert_eq!(second_cache.as_deref(), Some("HIT"));
    assert_eq!(users.received.load(Ordering::SeqCst), 1);
}
