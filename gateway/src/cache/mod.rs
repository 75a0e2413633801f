//! Caching around the request path: the response cache, in-flight de-duplication of client
//! operations, and the metrics of both (subgraph fetch de-duplication lives in
//! [`crate::transport::DedupTransport`]).
//!
//! A query's response is cacheable when every subgraph fetch of its plan sent a
//! `Cache-Control` hint ([`CachePolicy`]); it is stored under the SHA-256 of its text,
//! operation name, variables and — for private responses — the viewer, with the TTL of the
//! smallest `max-age` (capped by [`CacheSettings::max_ttl`]), and tagged with every entity
//! id it contains or names in its arguments and variables ([`tags`]). A mutation removes
//! every stored response tagged with an id it mentions or returns. The response says
//! `x-cache: HIT` or `MISS` when it is cacheable.
//!
//! Storing leaves the request's critical path: the response goes out, and a task (at most
//! [`MAX_WRITES_BEHIND`] at once; past that the request stores it itself) works out its tags
//! and writes it. Until that write lands, the next identical request is answered from
//! [`PendingWrites`] when no invalidation at all came since the read that computed it, and
//! otherwise waits for the write and asks the backend again.
//!
//! # Layout
//!
//! - [`policy`]: combining subgraph hints into the gateway's `Cache-Control`.
//! - [`backend`]: moka in this process, or Redis shared by every replica.
//! - [`entities`]: the entity cache, per `_entities` result, on the same backend and tags.
//! - [`tags`]: which entity ids a response or a mutation touches.
//! - [`metrics`]: counters, rendered at `/metrics`.

pub mod backend;
pub mod entities;
pub mod metrics;
pub mod policy;
pub mod tags;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use futures::FutureExt;
use gantry_kit::invalidation::InvalidationSink;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

pub use self::backend::PendingWrites;
use self::backend::{CacheBackend, Pending, ReadMark, RedisBackend, Removed};
use self::metrics::{GatewayMetrics, inc};
pub use self::policy::CachePolicy;
use crate::Gateway;
use crate::GraphQLRequest;
use crate::authorization::operation::Denied;
use crate::execute::GATEWAY_TIMEOUT;
use crate::graphql::{GraphQLResponse, OperationKind, ResponseBody};
use crate::inflight::{self, InFlight, InFlightKey};
use crate::pipeline::{self, execute_prepared};
use crate::prepare::PreparedOperation;
use crate::runtime::SupergraphRuntime;
use crate::shared::SharedState;

/// The response header that says whether the cache answered.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Caching and de-duplication settings.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Store cacheable query responses. Default: true.
    pub response_cache: bool,
    /// Identical concurrent client queries share one execution. Default: true.
    pub dedup_operations: bool,
    /// Identical concurrent subgraph query fetches share one request. Default: true.
    pub dedup_subgraph: bool,
    /// Cache `_entities` results per entity. Default: false.
    pub entity_cache: bool,
    /// No response is kept longer than this, whatever its `max-age`. Default: 300 s.
    pub max_ttl: Duration,
    /// Most responses kept in this process without Redis. Default: 10 000.
    pub capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            response_cache: true,
            dedup_operations: true,
            dedup_subgraph: true,
            entity_cache: false,
            max_ttl: Duration::from_secs(300),
            capacity: 10_000,
        }
    }
}

/// What one execution produced, shared by every identical request waiting on it: the
/// response as the request path made it (an executed one's body written, so sharing it
/// copies nothing) and its cache policy. Its subgraph headers (header rules) are for the
/// request that ran the operation, never one that shared its run or read it from the cache.
#[derive(Debug, Clone)]
struct Executed {
    response: GraphQLResponse,
    policy: CachePolicy,
}

/// The response cache and operation de-duplication of one gateway process.
#[derive(Debug)]
pub struct Caching {
    settings: CacheSettings,
    backend: CacheBackend,
    inflight: InFlight<Executed>,
    metrics: Arc<GatewayMetrics>,
    turns: Option<Arc<Semaphore>>,
    texts: TextDigests,
    pending: Arc<PendingWrites<PendingResponse>>,
    writes_behind: Arc<Semaphore>,
}

/// The most response-cache (and, per fetch, entity-cache) writes running after their
/// answers went out; one that finds them all busy is written before answering.
pub const MAX_WRITES_BEHIND: usize = 256;

/// What a response cache lookup found.
enum Lookup {
    Hit(Box<GraphQLResponse>),
    /// Nothing: the mark of the read, for storing what is computed now.
    Miss(ReadMark),
    /// The backend failed: nothing is stored either.
    Failed,
}

/// A response on its way into the backend: what a hit on it answers.
#[derive(Debug, Clone)]
struct PendingResponse {
    cache_control: String,
    body: Bytes,
}

/// SHA-256 digests of operation texts, remembered by their XXH3 hash: a response key hashes
/// the text's digest instead of the text. Without a SHA-256 instruction on this machine's
/// CPU, hashing the text twice per request was a third of the instructions of a cache hit.
struct TextDigests(moka::sync::Cache<u64, Arc<(String, [u8; 32])>>);

impl std::fmt::Debug for TextDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextDigests").finish_non_exhaustive()
    }
}

/// Bytes of operation text remembered with their digests: bounded by size, not count, so
/// clients sending large texts cannot make the remembered texts grow with them.
const TEXT_DIGEST_BYTES: u64 = 8 * 1024 * 1024;

impl Default for TextDigests {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .weigher(|_, known: &Arc<(String, [u8; 32])>| {
                    u32::try_from(known.0.len() + 64).unwrap_or(u32::MAX)
                })
                .max_capacity(TEXT_DIGEST_BYTES)
                .build(),
        )
    }
}

impl TextDigests {
    fn of(&self, text: &str) -> [u8; 32] {
        let key = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        match self.0.get(&key) {
            Some(known) if known.0 == text => known.1,
            _ => {
                let digest = digest(&[text.as_bytes()]);
                self.0.insert(key, Arc::new((text.to_owned(), digest)));
                digest
            }
        }
    }
}

impl Caching {
    /// `backend` holds responses (and the entity cache's entries, so one invalidation
    /// reaches both).
    pub fn new(
        settings: CacheSettings,
        backend: CacheBackend,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        Self {
            settings,
            backend,
            inflight: InFlight::default(),
            metrics,
            turns: None,
            texts: TextDigests::default(),
            pending: Arc::default(),
            writes_behind: Arc::new(Semaphore::new(MAX_WRITES_BEHIND)),
        }
    }

    /// At most `limit` operations at once (0: no limit); the rest wait for a turn. With
    /// the response cache on, a query's turn covers its cache lookup too (under overload
    /// thousands of Redis lookups at once timed out and the cache fell away); without it,
    /// only running the request path takes a turn, so identical requests join the one in
    /// flight instead of queueing behind it.
    pub fn with_turns(mut self, limit: usize) -> Self {
        self.turns = (limit > 0).then(|| Arc::new(Semaphore::new(limit)));
        self
    }

    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }

    /// A turn among the operations running at once, for work that runs the request path
    /// beside the cache (the primary part of a deferred query); `None` when unlimited.
    pub(crate) async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        take_turn(self.turns.clone()).await
    }

    /// Runs one operation through the cache: a query is answered from the cache or executed
    /// once for every identical concurrent request (and stored when cacheable); a mutation
    /// is executed, then invalidates what it touched.
    pub async fn execute(
        &self,
        operation: Operation,
        request: GraphQLRequest,
        context: pipeline::RequestContext,
        viewer: Option<Uuid>,
    ) -> GraphQLResponse {
        match operation.prepared.kind {
            OperationKind::Query => self.query(operation, request, context, viewer).await,
            OperationKind::Mutation => self.mutation(operation, request, context, viewer).await,
            OperationKind::Subscription => {
                let executed = run(self.turns.clone(), operation, request, context).await;
                respond(executed, CachePolicy::NoStore, None, true)
            }
        }
    }

    async fn query(
        &self,
        operation: Operation,
        request: GraphQLRequest,
        context: pipeline::RequestContext,
        viewer: Option<Uuid>,
    ) -> GraphQLResponse {
        let mut scope = viewer.map_or_else(|| "anonymous".to_owned(), |id| format!("viewer:{id}"));
        if let Some(denied) = &operation.denied {
            scope.push_str(&format!(":denied:{:x}", denied.fingerprint));
        }
        let mut private_key = cache_key(&request, &scope);
        // Another set of override labels may send fields to other subgraphs.
        let labels = operation.prepared.override_labels.key();
        if !labels.is_empty() {
            private_key = inflight::extend(private_key, labels.as_bytes());
        }
        // The backend's keys for a response anyone may see, and for one only this viewer may.
        // A caller denied some fields gets errors with its answer, which is never stored,
        // and must not be answered with a response stored for callers who may see them.
        let cacheable = self.settings.response_cache && operation.denied.is_none();
        let entry_keys = cacheable.then(|| {
            let mut operation = entry_digest(self.texts.of(request.text()), &request);
            if !labels.is_empty() {
                operation = digest(&[&operation, labels.as_bytes()]);
            }
            [
                entry_key(&operation, "public"),
                entry_key(&operation, &scope),
            ]
        });
        // With the response cache on, a query takes its turn before it looks in Redis:
        // thousands of lookups at once were what timed out. Without it, only the request
        // that runs the path needs one, so identical requests can still join it.
        let (_turn, turns) = if self.settings.response_cache {
            (take_turn(self.turns.clone()).await, None)
        } else {
            (None, self.turns.clone())
        };
        let mut mark = None;
        if let Some(keys) = &entry_keys {
            match self.look_up(keys).await {
                Lookup::Hit(response) => return *response,
                Lookup::Miss(read_mark) => mark = Some(read_mark),
                Lookup::Failed => {}
            }
        }
        // A request never joins one in flight that began before an invalidation it came
        // after: a client that has seen its mutation answered must not get an older read.
        if let Some(mark) = mark {
            private_key = inflight::extend(private_key, &mark.to_be_bytes());
        }

        // Without a mark (the lookup failed) nothing is stored: there is no telling whether
        // an invalidation came after the read began.
        let store = entry_keys
            .zip(mark)
            .map(|([public_key, private_key], since)| Store {
                backend: self.backend.clone(),
                metrics: self.metrics.clone(),
                max_ttl: self.settings.max_ttl,
                public_key,
                private_key,
                viewer,
                named: tags::ids_in_operation(request.text(), request.variables()),
                since,
            });
        let pending = self.pending.clone();
        let writes_behind = self.writes_behind.clone();
        let work = move || {
            async move {
                let executed = run(turns, operation, request, context).await;
                if let Some(store) = store {
                    store
                        .store_behind(executed.clone(), pending, writes_behind)
                        .await;
                }
                executed
            }
            .boxed()
        };
        let led = AtomicBool::new(false);
        let executed = if self.settings.dedup_operations {
            self.inflight
                .run(private_key, &self.metrics.operation_dedup, || {
                    led.store(true, Ordering::Relaxed);
                    work()
                })
                .await
        } else {
            led.store(true, Ordering::Relaxed);
            work().await
        };
        let cached = match executed.policy {
            CachePolicy::Cacheable { .. } if self.settings.response_cache => {
                inc(&self.metrics.response_cache.misses);
                Some("MISS")
            }
            _ => None,
        };
        let policy = executed.policy;
        respond(executed, policy, cached, led.load(Ordering::Relaxed))
    }

    /// The cached response under the first of `keys`, or the mark of the read that missed.
    /// A response still on its way in answers when no invalidation at all came since the
    /// read that computed it; otherwise the lookup waits for its write to land and looks
    /// again, so the backend decides (an invalidation of its tags since voids the write).
    async fn look_up(&self, keys: &[String]) -> Lookup {
        let mut waited = false;
        loop {
            let (cache_control, body) = match self.backend.get_first(keys).await {
                Ok((Some(stored), _)) => match StoredResponse::read(stored) {
                    Some(stored) => (stored.cache_control, stored.body),
                    None => {
                        tracing::warn!("a cached response is not in the expected form");
                        inc(&self.metrics.response_cache.errors);
                        return Lookup::Failed;
                    }
                },
                Ok((None, read_mark)) => match self.pending.get_first(keys, read_mark) {
                    Some(Pending::Ready(pending)) => (pending.cache_control, pending.body),
                    Some(Pending::Landing(mut landed)) if !waited => {
                        waited = true;
                        // Ends when the writer drops its sender: the write is done.
                        landed.changed().await.unwrap_or_default();
                        continue;
                    }
                    _ => return Lookup::Miss(read_mark),
                },
                Err(err) => {
                    tracing::debug!(error = %err, "response cache bypassed");
                    inc(&self.metrics.response_cache.errors);
                    return Lookup::Failed;
                }
            };
            inc(&self.metrics.response_cache.hits);
            let mut response = GraphQLResponse::from_serialized(body);
            response.cache_control = Some(cache_control);
            response
                .extra_headers
                .insert(X_CACHE, HeaderValue::from_static("HIT"));
            return Lookup::Hit(Box::new(response));
        }
    }

    async fn mutation(
        &self,
        operation: Operation,
        request: GraphQLRequest,
        context: pipeline::RequestContext,
        viewer: Option<Uuid>,
    ) -> GraphQLResponse {
        let mut touched = tags::ids_in_operation(request.text(), request.variables());
        let executed = run(self.turns.clone(), operation, request, context).await;
        if self.settings.response_cache || self.settings.entity_cache {
            tags::ids_in_json(&written_data(&executed), &mut touched);
            touched.extend(viewer.map(|id| id.to_string()));
            self.invalidator().invalidate_tags(&touched).await;
        }
        respond(executed, CachePolicy::NoStore, None, true)
    }

    /// What drops cached responses for changes this gateway did not carry (the outbox).
    pub fn invalidator(&self) -> CacheInvalidator {
        CacheInvalidator {
            backend: self.backend.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Removes cached responses by entity id: after a mutation, and for changes reported
/// through [`InvalidationSink`] (an outbox consumer in a subgraph, in this process or, with
/// Redis, in another one).
#[derive(Debug, Clone)]
pub struct CacheInvalidator {
    backend: CacheBackend,
    metrics: Arc<GatewayMetrics>,
}

impl CacheInvalidator {
    /// For a process that serves no gateway but changes data gateways cache (the posts
    /// subgraph): invalidates the responses every replica shares through Redis.
    pub fn redis(shared: SharedState, max_ttl: Duration) -> Self {
        Self {
            backend: CacheBackend::Redis(RedisBackend { shared, max_ttl }),
            metrics: Arc::default(),
        }
    }

    async fn invalidate_tags(&self, tags: &BTreeSet<String>) {
        match self.backend.invalidate(tags).await {
            Ok(removed) => {
                use std::sync::atomic::Ordering::Relaxed;
                let metrics = &self.metrics;
                metrics
                    .response_cache
                    .invalidations
                    .fetch_add(removed.responses, Relaxed);
                metrics
                    .entity_cache
                    .invalidations
                    .fetch_add(removed.entities, Relaxed);
                if removed != Removed::default() {
                    tracing::debug!(
                        responses = removed.responses,
                        entities = removed.entities,
                        "cached entries invalidated"
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not invalidate cached responses");
                inc(&self.metrics.response_cache.errors);
            }
        }
    }
}

impl InvalidationSink for CacheInvalidator {
    fn invalidate(&self, ids: Vec<Uuid>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let tags = ids.iter().map(Uuid::to_string).collect();
            self.invalidate_tags(&tags).await;
        })
    }
}

/// A turn, when turns are limited. The semaphore is never closed, so one always comes.
async fn take_turn(turns: Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match turns {
        Some(turns) => turns.acquire_owned().await.ok(),
        None => None,
    }
}

/// What the cache runs: a prepared operation, with the gateway and the runtime that
/// prepared it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub gateway: Arc<Gateway>,
    pub runtime: Arc<SupergraphRuntime>,
    pub prepared: Arc<PreparedOperation>,
    /// The caller may not see some fields: what runs instead.
    pub denied: Option<Arc<Denied>>,
}

/// The request path, in turn when turns are limited, and the policy of its response.
async fn run(
    turns: Option<Arc<Semaphore>>,
    operation: Operation,
    request: GraphQLRequest,
    context: pipeline::RequestContext,
) -> Executed {
    let _turn = take_turn(turns).await;
    let is_query = operation.prepared.kind == OperationKind::Query;
    let mut response = execute_prepared(
        &operation.gateway,
        &operation.runtime,
        &operation.prepared,
        operation.denied.as_deref(),
        request.variables(),
        context,
    )
    .await;
    let executed = response.has_data();
    let policy = CachePolicy::for_response(
        &std::mem::take(&mut response.subgraph_cache_control),
        is_query && executed,
        !response.errors().is_empty(),
    );
    // The deadline cut it short: answered `504` with the data that was complete.
    if executed && response.has_error_code(GATEWAY_TIMEOUT) {
        response.http_status_hint = Some(StatusCode::GATEWAY_TIMEOUT);
    }
    // A response with neither data nor errors is none the request path writes.
    if !executed && response.errors().is_empty() {
        response.body = ResponseBody::Written {
            bytes: Bytes::from_static(br#"{"data":null}"#),
            executed: true,
            errors: Vec::new(),
        };
    }
    Executed { response, policy }
}

/// The client's response: the written body, shared and not copied by identical requests;
/// the subgraphs' headers when this request `led` the run.
fn respond(
    executed: Executed,
    policy: CachePolicy,
    x_cache: Option<&'static str>,
    led: bool,
) -> GraphQLResponse {
    let mut response = executed.response;
    let headers = std::mem::take(&mut response.subgraph_headers);
    response.extra_headers = if led { headers } else { HeaderMap::new() };
    if response.has_data() {
        response.cache_control = Some(policy.header_value());
    }
    if let Some(value) = x_cache {
        response
            .extra_headers
            .insert(X_CACHE, HeaderValue::from_static(value));
    }
    response
}

/// The `data` of an executed response, read back from its body (`null` for one that did not
/// execute): which ids it holds, for cache tags.
fn written_data(executed: &Executed) -> Value {
    let Some(body) = executed.response.body.written() else {
        return Value::Null;
    };
    match serde_json::from_slice::<serde_json::Map<String, Value>>(body) {
        Ok(mut body) => body.remove("data").unwrap_or(Value::Null),
        Err(error) => {
            tracing::error!(%error, "a written response is not a JSON object");
            Value::Null
        }
    }
}

/// Where a cacheable response goes once executed.
struct Store {
    backend: CacheBackend,
    metrics: Arc<GatewayMetrics>,
    max_ttl: Duration,
    public_key: String,
    private_key: String,
    viewer: Option<Uuid>,
    /// The ids the operation names in its arguments and variables: the response is about
    /// them even when it does not contain them (`post(id: …) { likeCount }`).
    named: BTreeSet<String>,
    /// Where invalidations stood when the request began reading: a later invalidation of
    /// its tags voids the store.
    since: ReadMark,
}

impl Store {
    /// Stores a cacheable response after the request is answered: it is pending (see
    /// [`PendingWrites`]) until a task has written it, or stored right away when
    /// [`MAX_WRITES_BEHIND`] writes are running already.
    async fn store_behind(
        self,
        executed: Executed,
        pending: Arc<PendingWrites<PendingResponse>>,
        writes_behind: Arc<Semaphore>,
    ) {
        let (CachePolicy::Cacheable { private, .. }, Some(body)) =
            (executed.policy, executed.response.body.written())
        else {
            return;
        };
        let Ok(permit) = writes_behind.try_acquire_owned() else {
            return self.store(&executed).await;
        };
        let key = self.key(private).to_owned();
        let response = PendingResponse {
            cache_control: executed.policy.header_value(),
            body: body.clone(),
        };
        let landed = pending.insert(key.clone(), self.since, response);
        tokio::spawn(async move {
            self.store(&executed).await;
            pending.remove(&key, self.since);
            drop(landed);
            drop(permit);
        });
    }

    fn key(&self, private: bool) -> &str {
        if private {
            &self.private_key
        } else {
            &self.public_key
        }
    }

    async fn store(&self, executed: &Executed) {
        let (CachePolicy::Cacheable { max_age, private }, Some(body)) =
            (executed.policy, executed.response.body.written())
        else {
            return;
        };
        let mut tags = self.named.clone();
        tags::ids_in_json(&written_data(executed), &mut tags);
        if private {
            tags.extend(self.viewer.map(|id| id.to_string()));
        }
        let key = self.key(private);
        let value = match StoredResponse::write(&executed.policy.header_value(), body) {
            Ok(value) => value,
            Err(err) => {
                tracing::error!(error = %err, "could not serialize a response to store");
                return;
            }
        };
        let ttl = Duration::from_secs(max_age).min(self.max_ttl);
        match self.backend.set(key, value, ttl, &tags, self.since).await {
            Ok(true) => inc(&self.metrics.response_cache.stores),
            Ok(false) => tracing::debug!("not stored: invalidated while it was computed"),
            Err(err) => {
                tracing::debug!(error = %err, "could not store a response");
                inc(&self.metrics.response_cache.errors);
            }
        }
    }
}

/// A cached response as kept in the backend: its `Cache-Control` value, a newline, and the
/// body exactly as sent, so a hit goes out without being parsed or serialized again.
struct StoredResponse {
    cache_control: String,
    body: Bytes,
}

impl StoredResponse {
    fn write(cache_control: &str, body: &[u8]) -> Result<String, std::str::Utf8Error> {
        let body = std::str::from_utf8(body)?;
        Ok(format!("{cache_control}\n{body}"))
    }

    /// `None` for anything else (an entry written in another form).
    fn read(stored: String) -> Option<Self> {
        let newline = stored.find('\n')?;
        let cache_control = stored.get(..newline)?.to_string();
        let body = Bytes::from(stored).slice(newline + 1..);
        body.first()
            .is_some_and(|first| *first == b'{')
            .then_some(Self {
                cache_control,
                body,
            })
    }
}

/// What makes two requests the same: text, operation name, variables, and whose it is.
fn cache_key(request: &GraphQLRequest, scope: &str) -> InFlightKey {
    let variables = serde_json::to_string(request.variables()).unwrap_or_default();
    inflight::key(&[
        request.text().as_bytes(),
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        variables.as_bytes(),
        scope.as_bytes(),
    ])
}

/// What makes two responses the same, whoever they are for: the text (by its digest),
/// operation name and variables. A digest, so keys do not grow with the query.
fn entry_digest(text_digest: [u8; 32], request: &GraphQLRequest) -> [u8; 32] {
    let variables = serde_json::to_string(request.variables()).unwrap_or_default();
    digest(&[
        &text_digest,
        request.operation_name.as_deref().unwrap_or("").as_bytes(),
        variables.as_bytes(),
    ])
}

/// The backend's key for a response to `operation`, for `scope` (`public`, `anonymous` or
/// `viewer:<id>`).
fn entry_key(operation: &[u8; 32], scope: &str) -> String {
    format!("response:{}:{scope}", hex::encode(operation))
}

/// The SHA-256 of `parts`, each prefixed by its length so that no two different lists of
/// parts hash alike. Every cache and de-duplication key is one.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(query: &str, variables: Value) -> GraphQLRequest {
        GraphQLRequest::new(query).with_variables(variables)
    }

    #[test]
    fn a_private_key_differs_per_viewer_and_from_the_public_one() {
        let r = request("{ me { id } }", json!({}));
        let a = cache_key(&r, "viewer:a");
        assert_ne!(a, cache_key(&r, "viewer:b"));
        assert_ne!(a, cache_key(&r, "public"));
        assert_eq!(a, cache_key(&r, "viewer:a"));
    }

    #[test]
    fn variables_are_part_of_the_key() {
        let q = "query($id: ID!) { post(id: $id) { body } }";
        assert_ne!(
            cache_key(&request(q, json!({ "id": "1" })), "public"),
            cache_key(&request(q, json!({ "id": "2" })), "public")
        );
    }

    #[test]
    fn response_entries_differ_by_text_variables_and_scope() {
        let texts = TextDigests::default();
        let q = "query($id: ID!) { post(id: $id) { body } }";
        let key = |query: &str, id: &str, scope: &str| {
            let request = request(query, json!({ "id": id }));
            entry_key(&entry_digest(texts.of(query), &request), scope)
        };
        let public = key(q, "1", "public");
        assert_eq!(
            public,
            key(q, "1", "public"),
            "a remembered digest is the same"
        );
        assert_ne!(public, key(q, "2", "public"));
        assert_ne!(public, key(q, "1", "viewer:a"));
        assert_ne!(public, key("{ latestPosts { id } }", "1", "public"));
        assert_eq!(texts.of(q), digest(&[q.as_bytes()]));
    }

    #[test]
    fn a_stored_response_reads_back_as_the_bytes_it_was_sent_as() {
        let body = json!({ "data": { "post": { "id": "p1", "body": "two\nlines" } } });
        let written = serde_json::to_vec(&body).expect("serializes");
        let stored = StoredResponse::write("public, max-age=30", &written).expect("UTF-8");
        let read = StoredResponse::read(stored).expect("reads back");
        assert_eq!(read.cache_control, "public, max-age=30");
        assert_eq!(
            serde_json::from_slice::<Value>(&read.body).expect("JSON"),
            body
        );
        // An entry kept in another form is not served.
        let other = json!({ "body": body, "cacheControl": "public" }).to_string();
        assert!(StoredResponse::read(other).is_none());
    }

    #[tokio::test]
    async fn the_local_backend_invalidates_by_tag() {
        let backend = CacheBackend::new(None, 100, Duration::from_secs(60));
        let tags = BTreeSet::from(["p1".to_owned()]);
        let keys = ["k".to_owned()];
        let (_, mark) = backend.get_first(&keys).await.expect("local");
        backend
            .set("k", "v".into(), Duration::from_secs(60), &tags, mark)
            .await
            .expect("local");
        assert_eq!(
            backend.get_first(&keys).await.expect("local").0,
            Some("v".into())
        );
        let removed = backend.invalidate(&tags).await.expect("local");
        assert_eq!(removed.responses, 1);
        assert_eq!(backend.get_first(&keys).await.expect("local").0, None);
    }

    #[tokio::test]
    async fn a_value_read_before_an_invalidation_is_not_stored_after_it() {
        let backend = CacheBackend::new(None, 100, Duration::from_secs(60));
        let tags = BTreeSet::from(["p1".to_owned()]);
        let keys = ["k".to_owned()];
        let (_, before) = backend.get_first(&keys).await.expect("local");
        backend.invalidate(&tags).await.expect("local");
        let stored = backend
            .set("k", "stale".into(), Duration::from_secs(60), &tags, before)
            .await
            .expect("local");
        assert!(!stored);
        assert_eq!(backend.get_first(&keys).await.expect("local").0, None);
    }

    #[tokio::test]
    async fn a_value_read_right_after_an_invalidation_is_stored() {
        let backend = CacheBackend::new(None, 100, Duration::from_secs(60));
        let tags = BTreeSet::from(["p1".to_owned()]);
        let keys = ["k".to_owned()];
        backend.invalidate(&tags).await.expect("local");
        let (_, after) = backend.get_first(&keys).await.expect("local");
        let stored = backend
            .set("k", "fresh".into(), Duration::from_secs(60), &tags, after)
            .await
            .expect("local");
        assert!(
            stored,
            "no clock: however soon after, a later read is stored"
        );
        assert_eq!(
            backend.get_first(&keys).await.expect("local").0,
            Some("fresh".into())
        );
    }

    /// The same rules on Redis (`GANTRY_TEST_REDIS_URL`, default the local one), under a
    /// key prefix of this test's own.
    #[tokio::test]
    async fn the_redis_backend_orders_reads_and_invalidations_by_number() {
        let url = std::env::var("GANTRY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let shared = SharedState::new(crate::shared::RedisSettings {
            url,
            key_prefix: format!("gantry-test-{}:", Uuid::now_v7().simple()),
            timeout: Duration::from_secs(2),
            root_certificates: None,
        })
        .expect("a Redis URL");
        let backend = CacheBackend::new(Some(shared), 100, Duration::from_secs(60));
        let tags = BTreeSet::from(["p1".to_owned()]);
        let keys = ["k".to_owned()];
        let ttl = Duration::from_secs(60);

        let (_, before) = backend.get_first(&keys).await.expect("redis");
        let (_, concurrent) = backend.get_first(&keys).await.expect("redis");
        assert!(
            backend
                .set("k", "v1".into(), ttl, &tags, concurrent)
                .await
                .expect("redis")
        );
        let removed = backend.invalidate(&tags).await.expect("redis");
        let (_, after) = backend.get_first(&keys).await.expect("redis");
        let stale = backend
            .set("k", "stale".into(), ttl, &tags, before)
            .await
            .expect("redis");
        let fresh = backend
            .set("k", "v2".into(), ttl, &tags, after)
            .await
            .expect("redis");

        assert_eq!(removed.responses, 1);
        assert!(!stale, "read before the invalidation");
        assert!(fresh, "read right after it");
        assert_eq!(
            backend.get_first(&keys).await.expect("redis").0,
            Some("v2".into())
        );
    }
}
