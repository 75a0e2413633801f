//! Upstream subscriptions shared by identical client subscriptions: the same subgraph
//! operation, variables and caller (its user, or anonymous) read one upstream
//! subscription's events through a broadcast channel. The upstream opens with the first
//! client subscription and closes (`complete`, then the WebSocket) when the last one ends;
//! one that ends by itself is forgotten first, so a later client subscription opens a
//! fresh one. When its connection breaks (the subgraph restarting in a deploy, say), the
//! upstream subscribes again for [`RESUBSCRIBE_FOR`], its client subscriptions waiting
//! on; what the subgraph published in between is not replayed. Upstream subscriptions
//! share WebSocket connections (see [`Pool`]). Each event is resolved once for every
//! client subscription of the same operation, variables and caller (see [`Resolutions`]),
//! by the upstream's own task as soon as the event arrives, several events at once: an
//! event is broadcast when its resolutions are done, in order, so client subscriptions
//! only take the finished payload. Resolving never waits on a client, and a client never
//! waits on another: one that does not keep up falls behind on the broadcast alone.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
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
    /// An event, and what it came to for the client subscriptions that resolve it.
    Next(SubgraphResponse, Box<Resolutions>),
    /// The subgraph ended the subscription with these errors.
    Errors(Vec<Value>),
    Complete,
    /// It could not be opened, or broke.
    Failed(UpstreamError),
}

/// A response body as it goes to clients: serialized once, shared by every client
/// subscription that receives it, each transport only framing it.
pub(crate) type Payload = axum::extract::ws::Utf8Bytes;

/// How client subscriptions of one kind (see [`Resolutions`]) resolve an event: the same
/// for all of them, so any one of them can do it for the others.
pub(crate) trait Resolve: Send + Sync {
    fn resolve(self: Arc<Self>, event: SubgraphResponse) -> BoxFuture<'static, Payload>;
}

/// A resolution's place: filled once, by whoever gets there first.
type Cell = Arc<OnceCell<Payload>>;

/// What one upstream event came to, by the key of the client operations that resolve it
/// (see `ResolutionKey` in `session`): identical client subscriptions resolve it once. The
/// kinds known when the event arrived have their place made then, and the upstream's task
/// resolves them; a kind that joined later (a subscription planned again) resolves it
/// itself, the first of its kind to get there.
#[derive(Debug, Default)]
pub(crate) struct Resolutions {
    known: HashMap<u64, Cell>,
    late: Mutex<HashMap<u64, Cell>>,
}

impl Resolutions {
    /// The place of the response for client operations keyed `key`.
    pub fn cell(&self, key: u64) -> Cell {
        if let Some(cell) = self.known.get(&key) {
            return cell.clone();
        }
        self.late
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }
}

/// A kind of client subscription: how it resolves, and how many client subscriptions are
/// of it.
type Kind = (Arc<dyn Resolve>, usize);

/// The kinds of client subscriptions on one upstream, by key.
#[derive(Default)]
struct Kinds(Mutex<HashMap<u64, Kind>>);

impl Kinds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Kind>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, key: u64, resolver: Arc<dyn Resolve>) {
        self.lock().entry(key).or_insert((resolver, 0)).1 += 1;
    }

    fn remove(&self, key: u64) {
        let mut kinds = self.lock();
        if let Some((_, count)) = kinds.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                kinds.remove(&key);
            }
        }
    }

    /// An event's resolutions, with the work that fills them.
    fn resolutions(
        &self,
        response: &SubgraphResponse,
    ) -> (Resolutions, Vec<BoxFuture<'static, ()>>) {
        let kinds: Vec<(u64, Arc<dyn Resolve>)> = self
            .lock()
            .iter()
            .map(|(key, (resolver, _))| (*key, resolver.clone()))
            .collect();
        let mut known = HashMap::with_capacity(kinds.len());
        let mut work = Vec::with_capacity(kinds.len());
        for (key, resolver) in kinds {
            let cell = Cell::default();
            known.insert(key, cell.clone());
            let response = response.clone();
            work.push(Box::pin(async move {
                cell.get_or_init(|| resolver.resolve(response)).await;
            }) as BoxFuture<'static, ()>);
        }
        (
            Resolutions {
                known,
                late: Mutex::default(),
            },
            work,
        )
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
    kinds: Arc<Kinds>,
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
    kinds: Arc<Kinds>,
    /// The kind of client subscription this one is (its resolution key).
    kind: u64,
    pub events: broadcast::Receiver<Arc<HubEvent>>,
}

impl HubSubscription {
    /// Makes this client subscription one of kind `kind` from now on (it was planned
    /// again): events that arrive next are resolved for it by the upstream's task.
    pub fn resolve_as(&mut self, kind: u64, resolver: Arc<dyn Resolve>) {
        if kind != self.kind {
            self.kinds.add(kind, resolver);
            self.kinds.remove(self.kind);
            self.kind = kind;
        }
    }
}

impl Drop for HubSubscription {
    fn drop(&mut self) {
        self.kinds.remove(self.kind);
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
    /// is none, as a client subscription of kind `kind` that `resolver` resolves events
    /// for.
    pub fn join(
        &self,
        key: UpstreamKey,
        request: UpstreamRequest,
        kind: u64,
        resolver: Arc<dyn Resolve>,
    ) -> HubSubscription {
        let mut entries = self.shared.entries();
        if let Some(entry) = entries.get_mut(&key) {
            entry.subscribers += 1;
            entry.kinds.add(kind, resolver);
            return HubSubscription {
                shared: self.shared.clone(),
                key,
                generation: entry.generation,
                kinds: entry.kinds.clone(),
                kind,
                events: entry.events.subscribe(),
            };
        }
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = broadcast::channel(self.backlog);
        let (stop, stopped) = oneshot::channel();
        let kinds = Arc::new(Kinds::default());
        kinds.add(kind, resolver);
        entries.insert(
            key,
            Entry {
                generation,
                events: events.clone(),
                kinds: kinds.clone(),
                subscribers: 1,
                _stop: stop,
            },
        );
        let open = OpenUpstream::new(self.shared.clone());
        tokio::spawn(run_upstream(
            open,
            Upstreaming {
                key,
                generation,
                request,
                pool: self.pool.clone(),
                events: Broadcast::new(events, kinds.clone(), self.backlog),
            },
            stopped,
        ));
        HubSubscription {
            shared: self.shared.clone(),
            key,
            generation,
            kinds,
            kind,
            events: receiver,
        }
    }
}

/// What one upstream's task holds.
struct Upstreaming {
    key: UpstreamKey,
    generation: u64,
    request: UpstreamRequest,
    pool: Arc<Pool>,
    events: Broadcast,
}

/// An upstream's events on their way to its client subscriptions, in the order they came:
/// each is broadcast once the upstream's task has resolved it for every kind of client
/// subscription, several events being resolved at once. When more than the backlog wait,
/// the oldest goes out unfinished (its client subscriptions wait for its resolutions, or
/// finish them), so a stalled resolution shows as client subscriptions falling behind.
struct Broadcast {
    sender: broadcast::Sender<Arc<HubEvent>>,
    kinds: Arc<Kinds>,
    backlog: usize,
    /// Events not broadcast yet, oldest first, with how many of their resolutions run.
    waiting: VecDeque<(Arc<HubEvent>, usize)>,
    /// The number of the oldest waiting event (or of the next one, none waiting).
    first: u64,
    /// Resolutions running, each giving its event's number when done.
    running: FuturesUnordered<BoxFuture<'static, u64>>,
}

impl Broadcast {
    fn new(sender: broadcast::Sender<Arc<HubEvent>>, kinds: Arc<Kinds>, backlog: usize) -> Self {
        Self {
            sender,
            kinds,
            backlog,
            waiting: VecDeque::new(),
            first: 0,
            running: FuturesUnordered::new(),
        }
    }

    /// An event from the subgraph, resolved from now on; past as many resolutions running
    /// as the backlog holds events, it is left to its client subscriptions.
    fn next(&mut self, response: SubgraphResponse) {
        let (resolutions, work) = if self.running.len() < self.backlog {
            self.kinds.resolutions(&response)
        } else {
            (Resolutions::default(), Vec::new())
        };
        let number = self.first + self.waiting.len() as u64;
        let count = work.len();
        for resolution in work {
            self.running.push(Box::pin(async move {
                resolution.await;
                number
            }));
        }
        self.waiting.push_back((
            Arc::new(HubEvent::Next(response, Box::new(resolutions))),
            count,
        ));
        self.send_ready();
    }

    /// The subscription's end, after every event before it.
    fn last(&mut self, event: HubEvent) {
        self.waiting.push_back((Arc::new(event), 0));
        self.send_ready();
    }

    /// One resolution of event `number` is done.
    fn resolved(&mut self, number: u64) {
        if let Some(index) = number.checked_sub(self.first)
            && let Ok(index) = usize::try_from(index)
            && let Some((_, count)) = self.waiting.get_mut(index)
        {
            *count = count.saturating_sub(1);
        }
        self.send_ready();
    }

    /// Broadcasts the oldest events whose resolutions are done, and those past the backlog.
    fn send_ready(&mut self) {
        while let Some((_, count)) = self.waiting.front()
            && (*count == 0 || self.waiting.len() > self.backlog)
        {
            if let Some((event, _)) = self.waiting.pop_front() {
                self.first += 1;
                let _ = self.sender.send(event);
            }
        }
    }

    /// Waits for every event to be broadcast; `false` when the last client left meanwhile.
    async fn flush(&mut self, stopped: &mut oneshot::Receiver<()>) -> bool {
        while !self.waiting.is_empty() {
            tokio::select! {
                Some(number) = self.running.next() => self.resolved(number),
                _ = &mut *stopped => return false,
            }
        }
        true
    }
}

/// Holds one upstream subscription open until it ends or its last client leaves.
async fn run_upstream(
    open: OpenUpstream,
    upstreaming: Upstreaming,
    mut stopped: oneshot::Receiver<()>,
) {
    let Upstreaming {
        key,
        generation,
        request,
        pool,
        mut events,
    } = upstreaming;
    let shared = open.0.clone();
    // Forgets the upstream: a later client subscription opens a fresh one.
    let forget = || {
        let mut entries = shared.entries();
        if entries
            .get(&key)
            .is_some_and(|entry| entry.generation == generation)
        {
            entries.remove(&key);
        }
    };
    let opened = tokio::select! {
        opened = UpstreamSubscription::open(&request, &pool) => opened,
        _ = &mut stopped => return,
    };
    let mut upstream = match opened {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(url = %request.url, error = %error, "could not subscribe to the subgraph");
            forget();
            events.last(HubEvent::Failed(error));
            return;
        }
    };
    let ended = loop {
        let said = tokio::select! {
            said = upstream.next() => said,
            Some(number) = events.running.next() => {
                events.resolved(number);
                continue;
            }
            // Dropping the upstream completes it (and closes its connection when it
            // was the last there).
            _ = &mut stopped => return,
        };
        match said {
            Ok(Upstream::Next(response)) => events.next(response),
            Ok(Upstream::Errors(errors)) => break HubEvent::Errors(errors),
            Ok(Upstream::Complete) => break HubEvent::Complete,
            Err(error) if error.is_broken_connection() => {
                tracing::warn!(url = %request.url, error = %error, "the subgraph subscription broke; subscribing again");
                // What came before the break goes out first.
                if !events.flush(&mut stopped).await {
                    return;
                }
                match resubscribe(&request, &pool, &mut stopped).await {
                    Some(Ok(again)) => {
                        tracing::info!(url = %request.url, "subscribed to the subgraph again");
                        upstream = again;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(url = %request.url, error = %error, "could not subscribe to the subgraph again");
                        break HubEvent::Failed(error);
                    }
                    None => return,
                }
            }
            Err(error) => {
                tracing::warn!(url = %request.url, error = %error, "the subgraph subscription broke");
                break HubEvent::Failed(error);
            }
        }
    };
    drop(upstream);
    // Forgetting it drops the stop signal: its events go out first.
    if events.flush(&mut stopped).await {
        forget();
        events.last(ended);
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
