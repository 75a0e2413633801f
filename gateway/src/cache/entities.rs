//! The entity cache: each result of an `_entities` call is stored on its own, keyed by the
//! subgraph, the call's selection, the fetch's other variables and the representation (type
//! and key), so different operations share cached entities: the `User` fetched for a feed
//! serves a profile page. Which fetches are entity fetches, and where each call's
//! representations and results are, comes from the plan (the request's
//! [`EntityCall`]s): a flattened fetch has one call, a batch fetch one per alias. Only public results of a
//! fetch without errors are stored, for the `max-age` the subgraph sent (capped by
//! [`CacheSettings::max_ttl`](super::CacheSettings::max_ttl)), tagged with every id in the
//! representation and the result, so the invalidation that drops cached responses drops
//! cached entities too. A fetch asks the subgraph only for the representations the cache
//! lacks and gets the rest from the cache, in the original order. Entities are written after
//! the fetch has answered, by a task (see [`PendingWrites`]: until the write lands, a fetch
//! whose lookup shows no invalidation at all since gets them from there; any other asks the
//! subgraph).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use serde_json::{Map, Value, json};

use tokio::sync::Semaphore;

use super::backend::{CacheBackend, ENTITY_KEY_PREFIX, Pending, PendingWrites, ReadMark};
use super::digest;
use super::metrics::{CacheMetrics, inc};
use super::policy::CachePolicy;
use super::tags;
use crate::graphql::OperationKind;
use crate::transport::{
    EntityCall, SubgraphRequest, SubgraphResponse, SubgraphTransport, TransportError,
};

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
    pending: Arc<PendingWrites<Arc<EntityWrite>>>,
    writes_behind: Arc<Semaphore>,
}

/// One entity to store: under `key`, the result and the representation it answers (both
/// give its tags), with the fetch's hint.
#[derive(Debug)]
struct EntityWrite {
    key: String,
    entity: Value,
    representation: Value,
    cache_control: String,
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
            pending: Arc::default(),
            writes_behind: Arc::new(Semaphore::new(super::MAX_WRITES_BEHIND)),
        }
    }

    /// Stores `writes` after the fetch answers: pending until a task has written them, or
    /// right away when [`super::MAX_WRITES_BEHIND`] writes are running already.
    async fn store_behind(&self, writes: Vec<Arc<EntityWrite>>, ttl: Duration, since: ReadMark) {
        if writes.is_empty() {
            return;
        }
        let Ok(permit) = self.writes_behind.clone().try_acquire_owned() else {
            return write_entities(&self.backend, &self.metrics, &writes, ttl, since).await;
        };
        let landed: Vec<_> = writes
            .iter()
            .map(|write| self.pending.insert(write.key.clone(), since, write.clone()))
            .collect();
        let (backend, metrics, pending) = (
            self.backend.clone(),
            self.metrics.clone(),
            self.pending.clone(),
        );
        tokio::spawn(async move {
            write_entities(&backend, &metrics, &writes, ttl, since).await;
            for write in &writes {
                pending.remove(&write.key, since);
            }
            drop(landed);
            drop(permit);
        });
    }
}

/// Writes entities to the backend, each tagged with every id in its representation and
/// result.
async fn write_entities(
    backend: &CacheBackend,
    metrics: &CacheMetrics,
    writes: &[Arc<EntityWrite>],
    ttl: Duration,
    since: ReadMark,
) {
    let stores = writes.iter().map(|write| {
        let mut tags = BTreeSet::new();
        tags::ids_in_json(&write.representation, &mut tags);
        tags::ids_in_json(&write.entity, &mut tags);
        let value = stored(&write.entity, &write.cache_control);
        async move { backend.set(&write.key, value, ttl, &tags, since).await }
    });
    for outcome in join_all(stores).await {
        match outcome {
            Ok(true) => inc(&metrics.stores),
            Ok(false) => {}
            Err(err) => {
                tracing::debug!(error = %err, "could not store an entity");
                inc(&metrics.errors);
            }
        }
    }
}

/// The representations of each `_entities` call of a query fetch, taken out of its
/// variables; `None` (and the request untouched) for a root fetch, a mutation, or a call
/// whose representations are not a list.
fn take_calls(request: &mut SubgraphRequest) -> Option<Vec<Vec<Value>>> {
    if request.kind != OperationKind::Query || request.entity_calls.is_empty() {
        return None;
    }
    let lists = request.entity_calls.iter().all(|call| {
        request
            .variables
            .get(&call.representations_variable)
            .is_some_and(Value::is_array)
    });
    if !lists {
        return None;
    }
    let calls = request.entity_calls.clone();
    let taken = calls
        .iter()
        .map(
            |call| match request.variables.remove(&call.representations_variable) {
                Some(Value::Array(representations)) => representations,
                _ => Vec::new(),
            },
        )
        .collect();
    Some(taken)
}

/// The fetch's variables other than the representations, as JSON text.
fn other_variables(request: &SubgraphRequest) -> String {
    let others: Map<String, Value> = request
        .variables
        .iter()
        .filter(|(name, _)| {
            !request
                .entity_calls
                .iter()
                .any(|call| call.representations_variable == **name)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Value::Object(others).to_string()
}

/// What every entity of one call shares in its key: subgraph, operation name, the
/// variables other than the representations and the call's selection, so a flattened
/// fetch and a batch's alias asking the same of an entity share it.
fn call_hash(request: &SubgraphRequest, others: &str, call: &EntityCall) -> [u8; 32] {
    digest(&[
        request.subgraph_name.as_bytes(),
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        others.as_bytes(),
        call.selection.as_bytes(),
    ])
}

/// The whole fetch, for remembering that its results are not cacheable.
fn fetch_hash(request: &SubgraphRequest, others: &str) -> [u8; 32] {
    digest(&[
        request.subgraph_name.as_bytes(),
        request.query.as_bytes(),
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        others.as_bytes(),
    ])
}

fn entry_key(call: &[u8; 32], representation: &Value) -> String {
    let key = digest(&[call, representation.to_string().as_bytes()]);
    format!("{ENTITY_KEY_PREFIX}{}", hex::encode(key))
}

/// One cached entity as stored: the result and the hint it came with.
fn stored(entity: &Value, cache_control: &str) -> String {
    json!({ "entity": entity, "cacheControl": cache_control }).to_string()
}

/// One call's entities: those the cache had, and the indexes of those it lacked.
struct CallResults {
    results: Vec<Option<Value>>,
    missing: Vec<usize>,
}

#[async_trait]
impl SubgraphTransport for EntityCacheTransport {
    async fn execute(
        &self,
        mut request: SubgraphRequest,
    ) -> Result<SubgraphResponse, TransportError> {
        if request.kind != OperationKind::Query || request.entity_calls.is_empty() {
            return self.inner.execute(request).await;
        }
        let others = other_variables(&request);
        let fetch = fetch_hash(&request, &others);
        if self.uncacheable.contains_key(&fetch) {
            return self.inner.execute(request).await;
        }
        let Some(all) = take_calls(&mut request) else {
            return self.inner.execute(request).await;
        };
        let keys: Vec<Vec<String>> = request
            .entity_calls
            .iter()
            .zip(&all)
            .map(|(call, representations)| {
                let call = call_hash(&request, &others, call);
                representations
                    .iter()
                    .map(|r| entry_key(&call, r))
                    .collect()
            })
            .collect();
        let flat: Vec<String> = keys.iter().flatten().cloned().collect();
        // Without a mark (the lookup failed) nothing is stored: there is no telling whether
        // an invalidation came after the fetch began.
        let (found, mark) = match self.backend.get_many(&flat).await {
            Ok((found, mark)) => (found, Some(mark)),
            Err(err) => {
                tracing::debug!(error = %err, "entity cache bypassed");
                inc(&self.metrics.errors);
                (vec![None; flat.len()], None)
            }
        };

        let mut hints = Vec::new();
        let mut found = found.into_iter().zip(&flat);
        let mut calls: Vec<CallResults> = Vec::with_capacity(all.len());
        for representations in &all {
            let mut call = CallResults {
                results: vec![None; representations.len()],
                missing: Vec::new(),
            };
            for index in 0..representations.len() {
                let (text, key) = found.next().unzip();
                let cached = text
                    .flatten()
                    .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    .map(|mut entry| {
                        let hint = entry["cacheControl"].as_str().unwrap_or("").to_owned();
                        (entry["entity"].take(), hint)
                    })
                    .or_else(|| {
                        // One computed before an invalidation is not waited for: the
                        // subgraph is asked instead.
                        match self.pending.get(key?, mark?)? {
                            Pending::Ready(write) => {
                                Some((write.entity.clone(), write.cache_control.clone()))
                            }
                            Pending::Landing(_) => None,
                        }
                    });
                match cached {
                    Some((entity, hint)) => {
                        inc(&self.metrics.hits);
                        hints.push(hint);
                        call.results[index] = Some(entity);
                    }
                    None => {
                        inc(&self.metrics.misses);
                        call.missing.push(index);
                    }
                }
            }
            calls.push(call);
        }
        if calls.iter().all(|call| call.missing.is_empty()) {
            let mut data = Map::new();
            for (call, results) in request.entity_calls.iter().zip(calls) {
                data.insert(call.response_key.clone(), entities(results.results));
            }
            return Ok(SubgraphResponse {
                data: Some(Value::Object(data)),
                errors: Vec::new(),
                cache_control: Some(CachePolicy::from_hints(&hints).header_value()),
                headers: Default::default(),
            });
        }

        // Ask the subgraph only for what the cache lacks, call by call.
        let asked: Vec<Vec<Value>> = calls
            .iter()
            .zip(&all)
            .map(|(call, representations)| {
                call.missing
                    .iter()
                    .filter_map(|&i| representations.get(i).cloned())
                    .collect()
            })
            .collect();
        let mut partial = request.clone();
        for (call, asked) in partial.entity_calls.iter().zip(&asked) {
            partial.variables.insert(
                call.representations_variable.clone(),
                Value::Array(asked.clone()),
            );
        }
        let mut response = self.inner.execute(partial).await?;
        let fits = request
            .entity_calls
            .iter()
            .zip(&calls)
            .all(|(call, results)| {
                response
                    .data
                    .as_ref()
                    .and_then(|data| data.get(&call.response_key))
                    .and_then(Value::as_array)
                    .is_some_and(|fetched| fetched.len() == results.missing.len())
            });
        if !fits {
            // Not a list of the right length for every call: hand the subgraph's answer
            // back untouched (only possible when nothing was cached, or it misbehaved).
            return Ok(response);
        }
        let fetched: Vec<Vec<Value>> = request
            .entity_calls
            .iter()
            .map(|call| {
                match response
                    .data
                    .as_mut()
                    .and_then(|data| data.get_mut(&call.response_key))
                    .map(Value::take)
                {
                    Some(Value::Array(fetched)) => fetched,
                    _ => Vec::new(),
                }
            })
            .collect();

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
                let writes = fetched
                    .iter()
                    .zip(&asked)
                    .zip(calls.iter().zip(&keys))
                    .flat_map(|((fetched, asked), (call, keys))| {
                        fetched
                            .iter()
                            .zip(asked)
                            .zip(&call.missing)
                            .filter(|((entity, _), _)| entity.is_object())
                            .filter_map(move |((entity, representation), &index)| {
                                Some((entity, representation, keys.get(index)?))
                            })
                    })
                    .map(|(entity, representation, key)| {
                        Arc::new(EntityWrite {
                            key: key.clone(),
                            entity: entity.clone(),
                            representation: representation.clone(),
                            cache_control: hint.clone(),
                        })
                    })
                    .collect();
                self.store_behind(writes, ttl, since).await;
            }
            (CachePolicy::Cacheable { private: true, .. } | CachePolicy::NoStore, _)
                if response.errors.is_empty() =>
            {
                self.uncacheable.insert(fetch, ());
            }
            _ => {}
        }

        // Error paths point into the lists the subgraph saw; point them at the full lists.
        for error in &mut response.errors {
            let Some(Value::Array(path)) = error.get_mut("path") else {
                continue;
            };
            let Some(results) = path
                .first()
                .and_then(Value::as_str)
                .and_then(|key| {
                    request
                        .entity_calls
                        .iter()
                        .position(|call| call.response_key == key)
                })
                .and_then(|call| calls.get(call))
            else {
                continue;
            };
            if let Some(slot) = path.get_mut(1)
                && let Some(asked_index) = slot.as_u64()
                && let Some(&index) = usize::try_from(asked_index)
                    .ok()
                    .and_then(|i| results.missing.get(i))
            {
                *slot = Value::from(index);
            }
        }
        hints.push(hint);
        let mut data = match response.data.take() {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        };
        for ((call, mut results), fetched) in request.entity_calls.iter().zip(calls).zip(fetched) {
            for (entity, &index) in fetched.into_iter().zip(&results.missing) {
                if let Some(slot) = results.results.get_mut(index) {
                    *slot = Some(entity);
                }
            }
            data.insert(call.response_key.clone(), entities(results.results));
        }
        response.data = Some(Value::Object(data));
        response.cache_control = Some(CachePolicy::from_hints(&hints).header_value());
        Ok(response)
    }
}

/// A call's results as the `_entities` list, `null` where there is none.
fn entities(results: Vec<Option<Value>>) -> Value {
    Value::Array(results.into_iter().map(Option::unwrap_or_default).collect())
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
            let mut asked = Vec::new();
            let mut data = Map::new();
            for call in request.entity_calls.iter() {
                let ids: Vec<String> = request.variables[&call.representations_variable]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap_or("").to_owned())
                    .collect();
                let entities: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({ "id": id, "name": format!("n-{id}") }))
                    .collect();
                asked.extend(ids);
                data.insert(call.response_key.clone(), Value::Array(entities));
            }
            self.asked.lock().unwrap().push(asked);
            Ok(SubgraphResponse {
                data: Some(Value::Object(data)),
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
            kind: OperationKind::Query,
            entity_calls: Arc::new([EntityCall {
                response_key: "_entities".into(),
                representations_variable: "representations".into(),
                selection: "{...on User{name}}".into(),
            }]),
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

    /// A batch of two calls, as the planner writes one: `_e0` selects what a flattened
    /// fetch of [`request`] selects, `_e1` something else.
    fn batch(first: &[&str], second: &[&str]) -> SubgraphRequest {
        let reps = |ids: &[&str]| {
            Value::Array(
                ids.iter()
                    .map(|id| json!({ "__typename": "User", "id": id }))
                    .collect(),
            )
        };
        let mut variables = Map::new();
        variables.insert("__batch_reps_0".into(), reps(first));
        variables.insert("__batch_reps_1".into(), reps(second));
        let call = |alias: &str, selection: &str| EntityCall {
            response_key: alias.into(),
            representations_variable: format!("__batch_reps_{}", &alias[2..]),
            selection: selection.into(),
        };
        SubgraphRequest {
            // Text that says nothing of `_entities(representations:`: only the calls count.
            query: "query($__batch_reps_0:[_Any!]!, $__batch_reps_1:[_Any!]!){_e0: _entities(representations: $__batch_reps_0){...on User{name}} _e1: _entities(representations: $__batch_reps_1){...on User{name email}}}".into(),
            entity_calls: Arc::new([
                call("_e0", "{...on User{name}}"),
                call("_e1", "{...on User{name email}}"),
            ]),
            variables,
            ..request(&[])
        }
    }

    #[tokio::test]
    async fn a_batch_fetchs_calls_are_cached_per_call_and_shared_with_a_flattened_fetch() {
        let (echo, transport, metrics) = cache("max-age=30");
        let first = transport.execute(batch(&[A], &[A, B])).await.unwrap();
        assert_eq!(
            first.data.unwrap(),
            json!({
                "_e0": [{ "id": A, "name": format!("n-{A}") }],
                "_e1": [{ "id": A, "name": format!("n-{A}") }, { "id": B, "name": format!("n-{B}") }]
            })
        );

        let again = transport.execute(batch(&[B, A], &[B])).await.unwrap();
        assert_eq!(
            again.data.unwrap(),
            json!({
                "_e0": [{ "id": B, "name": format!("n-{B}") }, { "id": A, "name": format!("n-{A}") }],
                "_e1": [{ "id": B, "name": format!("n-{B}") }]
            })
        );
        assert_eq!(
            *echo.asked.lock().unwrap(),
            vec![
                vec![A.to_owned(), A.to_owned(), B.to_owned()],
                vec![B.to_owned()]
            ],
            "only `_e0`'s B was missing"
        );
        assert_eq!(metrics.hits.load(std::sync::atomic::Ordering::Relaxed), 2);

        transport.execute(request(&[A, B])).await.unwrap();
        assert_eq!(
            echo.asked.lock().unwrap().len(),
            2,
            "the flattened fetch selecting what `_e0` selects came from the cache"
        );
    }

    #[tokio::test]
    async fn a_mutation_fetch_is_never_answered_from_the_entity_cache() {
        let (echo, transport, _) = cache("max-age=30");
        transport.execute(request(&[A])).await.unwrap();
        let mutation = SubgraphRequest {
            kind: OperationKind::Mutation,
            ..request(&[A])
        };
        transport.execute(mutation).await.unwrap();
        assert_eq!(echo.asked.lock().unwrap().len(), 2);
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
        // The entities' write (behind the answer) lands before the change.
        tokio::task::yield_now().await;
        transport
            .backend
            .invalidate(&BTreeSet::from([A.to_owned()]))
            .await
            .unwrap();
        transport.execute(request(&[A, B])).await.unwrap();
        assert_eq!(echo.asked.lock().unwrap()[1], vec![A.to_owned()]);
    }
}
