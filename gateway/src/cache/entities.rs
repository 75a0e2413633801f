//! The entity cache: each result of an `_entities` fetch is stored on its own, keyed by the
//! subgraph, the fetch's query text (which fixes the type's selection), its other
//! variables and the representation (type and key), so different operations share cached
//! entities: the `User` fetched for a feed serves a profile page. Only public results of a
//! fetch without errors are stored, for the `max-age` the subgraph sent (capped by
//! [`CacheSettings::max_ttl`](super::CacheSettings::max_ttl)), tagged with every id in the
//! representation and the result, so the invalidation that drops cached responses drops
//! cached entities too. A fetch asks the subgraph only for the representations the cache
//! lacks and gets the rest from the cache, in the original order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use serde_json::{Map, Value, json};

use super::backend::{CacheBackend, ENTITY_KEY_PREFIX};
use super::digest;
use super::metrics::{CacheMetrics, inc};
use super::policy::CachePolicy;
use super::tags;
use crate::transport::{SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError};

/// Fetches whose results turned out private or unhinted are not looked up again for this
/// long (a lookup would always miss).
const UNCACHEABLE_MEMORY: Duration = Duration::from_secs(60);

/// Wraps a transport with the entity cache.
pub struct EntityCacheTransport {
    inner: Arc<dyn SubgraphTransport>,
    backend: CacheBackend,
    metrics: Arc<CacheMetrics>,
    max_ttl: Duration,
    uncacheable: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for EntityCacheTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityCacheTransport")
            .finish_non_exhaustive()
    }
}

impl EntityCacheTransport {
    pub fn new(
        inner: Arc<dyn SubgraphTransport>,
        backend: CacheBackend,
        metrics: Arc<CacheMetrics>,
        max_ttl: Duration,
    ) -> Self {
        Self {
            inner,
            backend,
            metrics,
            max_ttl,
            uncacheable: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(UNCACHEABLE_MEMORY)
                .build(),
        }
    }
}

/// The representations of an `_entities` query fetch, or `None` for any other request.
fn representations(request: &SubgraphRequest) -> Option<&Vec<Value>> {
    let query = request.query.trim_start();
    if query.starts_with("mutation") || query.starts_with("subscription") {
        return None;
    }
    if !query.contains("_entities(representations:") {
        return None;
    }
    request.variables.get("representations")?.as_array()
}

/// What every entity of one fetch shares in its key: subgraph, query, operation name and
/// the variables other than the representations.
fn fetch_hash(request: &SubgraphRequest) -> [u8; 32] {
    let mut others = request.variables.clone();
    others.remove("representations");
    let others = Value::Object(others).to_string();
    digest(&[
        request.subgraph_name.as_bytes(),
        request.query.as_bytes(),
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        others.as_bytes(),
    ])
}

fn entry_key(fetch: &[u8; 32], representation: &Value) -> String {
    let key = digest(&[fetch, representation.to_string().as_bytes()]);
    format!("{ENTITY_KEY_PREFIX}{}", hex::encode(key))
}

/// One cached entity as stored: the result and the hint it came with.
fn stored(entity: &Value, cache_control: &str) -> String {
    json!({ "entity": entity, "cacheControl": cache_control }).to_string()
}

#[async_trait]
impl SubgraphTransport for EntityCacheTransport {
    async fn execute(&self, request: SubgraphRequest) -> Result<SubgraphResponse, TransportError> {
        let Some(all) = representations(&request) else {
            return self.inner.execute(request).await;
        };
        let fetch = fetch_hash(&request);
        if self.uncacheable.contains_key(&fetch) {
            return self.inner.execute(request).await;
        }
        let all = all.clone();
        let keys: Vec<String> = all.iter().map(|r| entry_key(&fetch, r)).collect();
        // Without a mark (the lookup failed) nothing is stored: there is no telling whether
        // an invalidation came after the fetch began.
        let (found, mark) = match self.backend.get_many(&keys).await {
            Ok((found, mark)) => (found, Some(mark)),
            Err(err) => {
                tracing::debug!(error = %err, "entity cache bypassed");
                inc(&self.metrics.errors);
                (vec![None; keys.len()], None)
            }
        };

        let mut results: Vec<Option<Value>> = vec![None; all.len()];
        let mut hints = Vec::new();
        let mut missing = Vec::new();
        for (index, found) in found.into_iter().enumerate() {
            let parsed = found.and_then(|text| serde_json::from_str::<Value>(&text).ok());
            match parsed {
                Some(mut entry) => {
                    inc(&self.metrics.hits);
                    hints.push(entry["cacheControl"].as_str().unwrap_or("").to_owned());
                    results[index] = Some(entry["entity"].take());
                }
                None => {
                    inc(&self.metrics.misses);
                    missing.push(index);
                }
            }
        }
        if missing.is_empty() {
            return Ok(SubgraphResponse {
                data: Some(json!({ "_entities": results })),
                errors: Vec::new(),
                cache_control: Some(CachePolicy::from_hints(&hints).header_value()),
                headers: Default::default(),
            });
        }

        let mut partial = request;
        let asked: Vec<Value> = missing.iter().map(|&i| all[i].clone()).collect();
        partial
            .variables
            .insert("representations".into(), Value::Array(asked.clone()));
        let mut response = self.inner.execute(partial).await?;
        let fetched = match response
            .data
            .as_mut()
            .and_then(|data| data.get_mut("_entities"))
            .map(Value::take)
        {
            Some(Value::Array(fetched)) if fetched.len() == missing.len() => fetched,
            // Not a list of the right length: hand the subgraph's answer back untouched
            // (only possible when nothing was cached, or the subgraph misbehaved).
            other => {
                if let (Some(other), Some(data)) = (other, response.data.as_mut()) {
                    data["_entities"] = other;
                }
                return Ok(response);
            }
        };

        let hint = response.cache_control.clone().unwrap_or_default();
        match (CachePolicy::from_hints(&[hint.as_str()]), mark) {
            (
                CachePolicy::Cacheable {
                    max_age,
                    private: false,
                },
                Some(since),
            ) if response.errors.is_empty() => {
                let ttl = Duration::from_secs(max_age).min(self.max_ttl);
                let stores = fetched
                    .iter()
                    .zip(&asked)
                    .zip(&missing)
                    .filter(|((entity, _), _)| entity.is_object())
                    .map(|((entity, representation), &index)| {
                        let mut tags = BTreeSet::new();
                        tags::ids_in_json(representation, &mut tags);
                        tags::ids_in_json(entity, &mut tags);
                        let key = keys[index].clone();
                        let value = stored(entity, &hint);
                        async move { self.backend.set(&key, value, ttl, &tags, since).await }
                    });
                for outcome in join_all(stores).await {
                    match outcome {
                        Ok(true) => inc(&self.metrics.stores),
                        Ok(false) => {}
                        Err(err) => {
                            tracing::debug!(error = %err, "could not store an entity");
                            inc(&self.metrics.errors);
                        }
                    }
                }
            }
            (CachePolicy::Cacheable { private: true, .. } | CachePolicy::NoStore, _)
                if response.errors.is_empty() =>
            {
                self.uncacheable.insert(fetch, ());
            }
            _ => {}
        }

        for (entity, &index) in fetched.into_iter().zip(&missing) {
            results[index] = Some(entity);
        }
        // Error paths point into the list the subgraph saw; point them at the full list.
        for error in &mut response.errors {
            if let Some(Value::Array(path)) = error.get_mut("path")
                && path.first().and_then(Value::as_str) == Some("_entities")
                && let Some(slot) = path.get_mut(1)
                && let Some(asked_index) = slot.as_u64()
                && let Some(&index) = usize::try_from(asked_index)
                    .ok()
                    .and_then(|i| missing.get(i))
            {
                *slot = Value::from(index);
            }
        }
        hints.push(hint);
        let mut data = response
            .data
            .take()
            .unwrap_or_else(|| Value::Object(Map::new()));
        data["_entities"] =
            Value::Array(results.into_iter().map(Option::unwrap_or_default).collect());
        response.data = Some(data);
        response.cache_control = Some(CachePolicy::from_hints(&hints).header_value());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use reqwest::header::HeaderMap;

    use super::*;

    const A: &str = "0192f0c4-7b3e-7c3a-9f00-00000000000a";
    const B: &str = "0192f0c4-7b3e-7c3a-9f00-00000000000b";

    /// Answers `_entities` with `{ id, name }` per representation and records what it saw.
    #[derive(Default)]
    struct Echo {
        asked: Mutex<Vec<Vec<String>>>,
        hint: &'static str,
    }

    #[async_trait]
    impl SubgraphTransport for Echo {
        async fn execute(
            &self,
            request: SubgraphRequest,
        ) -> Result<SubgraphResponse, TransportError> {
            let reps = request.variables["representations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ids: Vec<String> = reps
                .iter()
                .map(|r| r["id"].as_str().unwrap_or("").to_owned())
                .collect();
            self.asked.lock().unwrap().push(ids.clone());
            let entities: Vec<Value> = ids
                .iter()
                .map(|id| json!({ "id": id, "name": format!("n-{id}") }))
                .collect();
            Ok(SubgraphResponse {
                data: Some(json!({ "_entities": entities })),
                errors: Vec::new(),
                cache_control: Some(self.hint.to_owned()),
                ..SubgraphResponse::default()
            })
        }
    }

    fn request(ids: &[&str]) -> SubgraphRequest {
        let reps: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "__typename": "User", "id": id }))
            .collect();
        let mut variables = Map::new();
        variables.insert("representations".into(), Value::Array(reps));
        SubgraphRequest {
            subgraph_name: "users".into(),
            query: "query($representations:[_Any!]!){_entities(representations:$representations){...on User{name}}}".into(),
            operation_name: None,
            variables,
            headers: HeaderMap::new(),
            extensions: Map::new(),
            context: None,
        }
    }

    fn cache(hint: &'static str) -> (Arc<Echo>, EntityCacheTransport, Arc<CacheMetrics>) {
        let echo = Arc::new(Echo {
            hint,
            ..Echo::default()
        });
        let metrics = Arc::new(CacheMetrics::default());
        let transport = EntityCacheTransport::new(
            echo.clone(),
            CacheBackend::new(None, 100, Duration::from_secs(60)),
            metrics.clone(),
            Duration::from_secs(60),
        );
        (echo, transport, metrics)
    }

    #[tokio::test]
    async fn a_second_fetch_asks_only_for_the_entities_the_cache_lacks_in_order() {
        let (echo, transport, metrics) = cache("max-age=30");
        transport.execute(request(&[A])).await.unwrap();
        let response = transport.execute(request(&[B, A])).await.unwrap();
        assert_eq!(
            response.data.unwrap()["_entities"],
            json!([{ "id": B, "name": format!("n-{B}") }, { "id": A, "name": format!("n-{A}") }])
        );
        assert_eq!(
            *echo.asked.lock().unwrap(),
            vec![vec![A.to_owned()], vec![B.to_owned()]]
        );
        assert_eq!(metrics.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
        let response = transport.execute(request(&[A, B])).await.unwrap();
        assert_eq!(
            echo.asked.lock().unwrap().len(),
            2,
            "both came from the cache"
        );
        assert_eq!(
            response.cache_control.as_deref(),
            Some("public, max-age=30")
        );
    }

    #[tokio::test]
    async fn private_results_are_never_cached() {
        let (echo, transport, _) = cache("private, max-age=30");
        transport.execute(request(&[A])).await.unwrap();
        transport.execute(request(&[A])).await.unwrap();
        assert_eq!(echo.asked.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_invalidated_entity_is_fetched_again() {
        let (echo, transport, _) = cache("max-age=30");
        transport.execute(request(&[A, B])).await.unwrap();
        transport
            .backend
            .invalidate(&BTreeSet::from([A.to_owned()]))
            .await
            .unwrap();
        transport.execute(request(&[A, B])).await.unwrap();
        assert_eq!(echo.asked.lock().unwrap()[1], vec![A.to_owned()]);
    }
}
