//! Upstream subscriptions shared by identical client subscriptions: the same subgraph
//! operation, variables and caller (its user, or anonymous) read one upstream
//! subscription's events through a broadcast channel. The upstream opens with the first
//! client subscription and closes (`complete`, then the WebSocket) when the last one ends;
//! one that ends by itself is forgotten first, so a later client subscription opens a
//! fresh one. When its connection breaks (the subgraph restarting in a deploy, say), the
//! upstream subscribes again for [`RESUBSCRIBE_FOR`], its client subscriptions waiting
//! on; what the subgraph published in between is not replayed. Upstream subscriptions
//! share WebSocket connections (see [`Pool`]). Each event is resolved once for every
//! client subscription of the same operation, variables and caller (see [`Resolutions`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OnceCell, broadcast, oneshot};
use tokio_rustls::rustls::ClientConfig;
use uuid::Uuid;
use xxhash_rust::xxh3::Xxh3;

use super::UPSTREAMS_GAUGE;
use super::upstream::{Pool, Upstream, UpstreamError, UpstreamRequest, UpstreamSubscription};
use crate::transport::SubgraphResponse;

/// How long an upstream whose connection broke is subscribed again before its client
/// subscriptions end with the failure: a subgraph's restart fits in it.
const RESUBSCRIBE_FOR: Duration = Duration::from_secs(30);
/// The first wait before subscribing again; it doubles up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// What an upstream subscription says, to every client subscription sharing it.
#[derive(Debug)]
pub(crate) enum HubEvent {
    /// An event, and what it came to for the client subscriptions that resolved it.
    Next(SubgraphResponse, Box<Resolutions>),
    /// The subgraph ended the subscription with these errors.
    Errors(Vec<Value>),
    Complete,
    /// It could not be opened, or broke.
    Failed(UpstreamError),
}

/// What one upstream event came to, by the client operation that resolved it (see
/// `ResolutionKey` in `session`): identical client subscriptions resolve it once, the
/// first to get there, and the others take its finished response.
#[derive(Debug, Default)]
pub(crate) struct Resolutions(Mutex<HashMap<u64, Arc<OnceCell<Arc<Value>>>>>);

impl Resolutions {
    /// The place of the response for client operations keyed `key`.
    pub fn cell(&self, key: u64) -> Arc<OnceCell<Arc<Value>>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }
}

/// What tells identical upstream subscriptions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamKey(u64);

impl UpstreamKey {
    pub fn new(subgraph: &str, request: &UpstreamRequest, caller: Option<Uuid>) -> Self {
        let mut hasher = Xxh3::new();
        subgraph.hash(&mut hasher);
        request.url.hash(&mut hasher);
        request.query.hash(&mut hasher);
        Value::Object(request.variables.clone())
            .to_string()
            .hash(&mut hasher);
        caller.hash(&mut hasher);
        Self(hasher.finish())
    }
}

struct Entry {
    generation: u64,
    events: broadcast::Sender<Arc<HubEvent>>,
    subscribers: usize,
    /// Dropped to stop the upstream task.
    _stop: oneshot::Sender<()>,
}

#[derive(Default)]
struct Shared {
    entries: Mutex<HashMap<UpstreamKey, Entry>>,
    upstreams: AtomicUsize,
    generations: AtomicU64,
}

impl Shared {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<UpstreamKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shared upstream subscriptions of one process.
pub(crate) struct Hub {
    shared: Arc<Shared>,
    /// Events a client subscription may fall behind by.
    backlog: usize,
    /// The WebSocket connections upstream subscriptions share.
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("upstreams", &self.active())
            .finish_non_exhaustive()
    }
}

/// One client subscription's place on an upstream; leaving (drop) closes the upstream
/// when it was the last.
pub(crate) struct HubSubscription {
    shared: Arc<Shared>,
    key: UpstreamKey,
    generation: u64,
    pub events: broadcast::Receiver<Arc<HubEvent>>,
}

impl Drop for HubSubscription {
    fn drop(&mut self) {
        let mut entries = self.shared.entries();
        if let Some(entry) = entries.get_mut(&self.key)
            && entry.generation == self.generation
        {
            entry.subscribers -= 1;
            if entry.subscribers == 0 {
                entries.remove(&self.key);
            }
        }
    }
}

/// Counts an upstream as open until its task ends, however it ends.
struct OpenUpstream(Arc<Shared>);

impl OpenUpstream {
    fn new(shared: Arc<Shared>) -> Self {
        shared.upstreams.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(UPSTREAMS_GAUGE).increment(1.0);
        Self(shared)
    }
}

impl Drop for OpenUpstream {
    fn drop(&mut self) {
        self.0.upstreams.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(UPSTREAMS_GAUGE).decrement(1.0);
    }
}

impl Hub {
    pub fn new(
        init_timeout: Duration,
        backlog: usize,
        per_connection: usize,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            backlog,
            pool: Arc::new(Pool::new(per_connection, init_timeout, tls)),
        }
    }

    /// WebSocket connections to subgraphs open now.
    pub fn connections(&self) -> usize {
        self.pool.open()
    }

    /// Upstream subscriptions open now.
    pub fn active(&self) -> usize {
        self.shared.upstreams.load(Ordering::Acquire)
    }

    /// Joins the upstream subscription `key` names, opening it with `request` when there
    /// is none.
    pub fn join(&self, key: UpstreamKey, request: UpstreamRequest) -> HubSubscription {
        let mut entries = self.shared.entries();
        if let Some(entry) = entries.get_mut(&key) {
            entry.subscribers += 1;
            return HubSubscription {
                shared: self.shared.clone(),
                key,
                generation: entry.generation,
                events: entry.events.subscribe(),
            };
        }
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = broadcast::channel(self.backlog);
        let (stop, stopped) = oneshot::channel();
        entries.insert(
            key,
            Entry {
                generation,
                events: events.clone(),
                subscribers: 1,
                _stop: stop,
            },
        );
        let open = OpenUpstream::new(self.shared.clone());
        tokio::spawn(run_upstream(
            open,
            key,
            generation,
            request,
            self.pool.clone(),
            events,
            stopped,
        ));
        HubSubscription {
            shared: self.shared.clone(),
            key,
            generation,
            events: receiver,
        }
    }
}

/// Holds one upstream subscription open until it ends or its last client leaves.
async fn run_upstream(
    open: OpenUpstream,
    key: UpstreamKey,
    generation: u64,
    request: UpstreamRequest,
    pool: Arc<Pool>,
    events: broadcast::Sender<Arc<HubEvent>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let shared = open.0.clone();
    let finish = |event: HubEvent| {
        let mut entries = shared.entries();
        if entries
            .get(&key)
            .is_some_and(|entry| entry.generation == generation)
        {
            entries.remove(&key);
        }
        let _ = events.send(Arc::new(event));
    };
    let opened = tokio::select! {
        opened = UpstreamSubscription::open(&request, &pool) => opened,
        _ = &mut stopped => return,
    };
    let mut upstream = match opened {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(url = %request.url, error = %error, "could not subscribe to the subgraph");
            return finish(HubEvent::Failed(error));
        }
    };
    loop {
        let said = tokio::select! {
            said = upstream.next() => said,
            // Dropping the upstream completes it (and closes its connection when it
            // was the last there).
            _ = &mut stopped => return,
        };
        match said {
            Ok(Upstream::Next(response)) => {
                let _ = events.send(Arc::new(HubEvent::Next(response, Box::default())));
            }
            Ok(Upstream::Errors(errors)) => return finish(HubEvent::Errors(errors)),
            Ok(Upstream::Complete) => return finish(HubEvent::Complete),
            Err(error) if error.is_broken_connection() => {
                tracing::warn!(url = %request.url, error = %error, "the subgraph subscription broke; subscribing again");
                match resubscribe(&request, &pool, &mut stopped).await {
                    Some(Ok(again)) => {
                        tracing::info!(url = %request.url, "subscribed to the subgraph again");
                        upstream = again;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(url = %request.url, error = %error, "could not subscribe to the subgraph again");
                        return finish(HubEvent::Failed(error));
                    }
                    None => return,
                }
            }
            Err(error) => {
                tracing::warn!(url = %request.url, error = %error, "the subgraph subscription broke");
                return finish(HubEvent::Failed(error));
            }
        }
    }
}

/// Opens `request` again, waiting longer after each broken attempt, for at most
/// [`RESUBSCRIBE_FOR`]; `None` when the last client left meanwhile.
async fn resubscribe(
    request: &UpstreamRequest,
    pool: &Pool,
    stopped: &mut oneshot::Receiver<()>,
) -> Option<Result<UpstreamSubscription, UpstreamError>> {
    let deadline = tokio::time::Instant::now() + RESUBSCRIBE_FOR;
    let mut wait = FIRST_WAIT;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = &mut *stopped => return None,
        }
        let opened = tokio::select! {
            opened = UpstreamSubscription::open(request, pool) => opened,
            _ = &mut *stopped => return None,
        };
        match opened {
            Err(error)
                if error.is_broken_connection() && tokio::time::Instant::now() < deadline =>
            {
                wait = (wait * 2).min(LONGEST_WAIT);
            }
            opened => return Some(opened),
        }
    }
}
