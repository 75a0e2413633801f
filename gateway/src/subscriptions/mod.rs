//! Subscriptions through the gateway: clients subscribe over a WebSocket
//! (`graphql-transport-ws`), server-sent events (`graphql-sse`, distinct connections and
//! single connection modes) or multipart HTTP (Apollo's `multipart/mixed; subscriptionSpec="1.0"`) on the GraphQL
//! endpoint. A subscription goes through the same steps as a query
//! ([`GatewayService::admit_stream`]: persisted queries, preparation, authentication,
//! authorization, rate limits); its plan is a subscription fetch to the subgraph that owns
//! the root field and, per event, the rest of the plan, which resolves the fields other
//! subgraphs own. The gateway subscribes to the owning subgraph over a WebSocket
//! (`graphql-transport-ws`, the caller's headers in `connection_init`); identical
//! subscriptions (same subgraph operation, variables and caller) share one upstream
//! subscription, which ends when the last of them does, and resolve each of its events
//! once; upstream subscriptions with the same forwarded headers share WebSocket
//! connections (a bounded number on each); one whose connection breaks (the subgraph
//! restarting) is subscribed again for a while, its client subscriptions kept. A client
//! subscription that falls too far behind its upstream ends with `SUBSCRIPTION_LAGGED`.
//!
//! A subscription ends with an `UNAUTHENTICATED` error when its access token expires (the
//! token is verified again at its expiry; a refreshed connection subscribes again). When
//! the supergraph is recomposed, live subscriptions are planned again and keep their
//! client connections; one whose field disappeared ends with the validation error that
//! says so. Subgraphs in this process (`gantry serve`) are subscribed to without a socket.
//!
//! # Layout
//!
//! - this file: [`SubscriptionSettings`], [`Subscriptions`] (the process's limits, its
//!   shared upstreams and its gauges) and the error codes.
//! - `plan`: a subscription's plan split into its subscription fetch and the rest.
//! - `upstream`: the `graphql-transport-ws` client that subscribes to a subgraph, over
//!   connections shared by upstream subscriptions of the same identity.
//! - `hub`: upstream subscriptions shared by identical client subscriptions, each event
//!   resolved there once for every kind of client subscription and serialized once.
//! - `session`: one client subscription — admitted, its upstream joined, how its events
//!   are resolved and shaped like a query's response, ended at token expiry.
//! - `ws`, `sse`, `event_streams`, `multipart`: the client transports (`sse` one stream
//!   per operation, `event_streams` one reserved stream for many), each framing the
//!   shared serialized events.
//! - `reservations`: the streams `event_streams` holds, and the limits on those reserved
//!   and not yet opened.
//! - `routes`: which requests on the GraphQL endpoint go to a client transport.

mod event_streams;
mod hub;
mod multipart;
mod plan;
mod reservations;
mod routes;
mod session;
mod sse;
mod upstream;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use self::routes::with_subscriptions;
pub use self::session::Event;

use self::event_streams::EventStreams;
use self::hub::Hub;
use crate::service::GatewayService;
use crate::transport::{ClientTls, SubgraphSubscriber};

/// The code of a subscription refused because a limit on subscriptions is reached.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";
/// The code of an event stream reservation (single connection mode) refused because its
/// client address, or the process, holds as many reservations not yet opened as allowed.
pub const TOO_MANY_RESERVATIONS: &str = "TOO_MANY_RESERVATIONS";
/// The code of the error that ends a subscription whose client fell more events behind
/// than [`SubscriptionSettings::event_backlog`]: the events it missed are not replayed.
pub const SUBSCRIPTION_LAGGED: &str = "SUBSCRIPTION_LAGGED";
/// The code of the error that ends a subscription whose subgraph subscription failed or
/// could not be opened.
pub use crate::execute::SUBGRAPH_ERROR;

/// Limits and timers of subscriptions; every default is safe for a small server.
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    /// Client subscriptions one WebSocket connection may hold at once; one more is
    /// refused with an `error` message (`TOO_MANY_SUBSCRIPTIONS`). Default: 100.
    pub max_per_connection: usize,
    /// Client subscriptions this process holds at once, every transport together; one
    /// more is refused with `TOO_MANY_SUBSCRIPTIONS`. Default: 10,000.
    pub max_per_process: usize,
    /// How often an idle stream carries a heartbeat: a `ping` on WebSockets, a comment on
    /// server-sent events, `{}` on multipart. Default: 15 s.
    pub heartbeat: Duration,
    /// How long a WebSocket client has to send `connection_init` after connecting, and
    /// how long a subgraph has to acknowledge the gateway's. Default: 10 s.
    pub init_timeout: Duration,
    /// How long a reserved server-sent event stream (single connection mode) waits for
    /// its client to open it before the reservation expires. Default: 30 s.
    pub reservation_timeout: Duration,
    /// Event stream reservations one client address (an IPv6 address by its /64) may hold
    /// not yet opened; one more is refused with `429` and `TOO_MANY_RESERVATIONS`. A
    /// client holds one only between its `PUT` and its `GET`, one round trip. Default: 16.
    pub max_pending_streams_per_address: usize,
    /// Event stream reservations this process holds not yet opened, every address
    /// together; one more is refused likewise. Default: 1,000.
    pub max_pending_streams: usize,
    /// Events of its upstream a client subscription may fall behind by (its client not
    /// reading them fast enough); one that falls further behind ends with a
    /// `SUBSCRIPTION_LAGGED` error. Default: 256.
    pub event_backlog: usize,
    /// Upstream subscriptions one WebSocket connection to a subgraph carries; those of
    /// the same subgraph and forwarded headers share connections, another opening past
    /// this many. Keep it within the subgraphs' own per-connection limit (Gantry's
    /// subgraphs: `GANTRY_SUBGRAPH_SUBSCRIPTIONS_PER_CONNECTION`, 100). Default: 100.
    pub upstream_per_connection: usize,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            max_per_connection: 100,
            max_per_process: 10_000,
            heartbeat: Duration::from_secs(15),
            init_timeout: Duration::from_secs(10),
            reservation_timeout: Duration::from_secs(30),
            max_pending_streams_per_address: 16,
            max_pending_streams: 1_000,
            event_backlog: 256,
            upstream_per_connection: 100,
        }
    }
}

/// The subscriptions of one gateway process: the service that admits them, the shared
/// upstreams, and how many are open.
pub struct Subscriptions {
    service: Arc<GatewayService>,
    settings: SubscriptionSettings,
    hub: Hub,
    event_streams: EventStreams,
    active: Arc<AtomicUsize>,
    /// Subgraphs in this process, subscribed to without a socket.
    in_process: InProcessSubscribers,
}

/// Subgraph name → how to subscribe to it in this process.
pub type InProcessSubscribers = HashMap<String, Arc<dyn SubgraphSubscriber>>;

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("settings", &self.settings)
            .field("active", &self.active())
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Subscriptions {
    /// Subscriptions admitted by `service`; the subgraphs in `in_process` are subscribed
    /// to directly, every other one over a WebSocket at its URL in the supergraph (`wss://`
    /// for an `https://` URL, with `tls`, the TLS settings of every subgraph client).
    pub fn new(
        service: Arc<GatewayService>,
        settings: SubscriptionSettings,
        in_process: InProcessSubscribers,
        tls: &ClientTls,
    ) -> Arc<Self> {
        describe_metrics();
        let tls = tls
            .websocket_config()
            .inspect_err(|error| {
                tracing::error!(%error, "no TLS for subgraph subscriptions: wss:// upstreams will fail");
            })
            .ok();
        Arc::new(Self {
            hub: Hub::new(
                settings.init_timeout,
                settings.event_backlog.max(1),
                settings.upstream_per_connection,
                tls,
            ),
            event_streams: EventStreams::default(),
            service,
            settings,
            active: Arc::new(AtomicUsize::new(0)),
            in_process,
        })
    }

    pub fn settings(&self) -> &SubscriptionSettings {
        &self.settings
    }

    /// Client subscriptions open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Upstream subscriptions to subgraphs open now.
    pub fn upstreams(&self) -> usize {
        self.hub.active()
    }

    /// WebSocket connections to subgraphs open now (upstream subscriptions share them).
    pub fn upstream_connections(&self) -> usize {
        self.hub.connections()
    }

    /// Server-sent event streams of the single connection mode reserved or open now.
    pub fn event_streams(&self) -> usize {
        self.event_streams.count()
    }

    /// Server-sent event streams of the single connection mode reserved and not opened
    /// yet.
    pub fn pending_event_streams(&self) -> usize {
        self.event_streams.pending()
    }

    /// A place for one more client subscription, or `None` at the process limit.
    fn admit(&self) -> Option<ActiveSubscription> {
        let max = self.settings.max_per_process;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                (active < max).then_some(active + 1)
            })
            .ok()
            .map(|_| {
                metrics::gauge!(ACTIVE_GAUGE).increment(1.0);
                ActiveSubscription(self.active.clone())
            })
    }
}

const ACTIVE_GAUGE: &str = "gantry_subscriptions_active";
const UPSTREAMS_GAUGE: &str = "gantry_subscription_upstreams_active";
const EVENT_STREAMS_GAUGE: &str = "gantry_subscription_event_streams_active";

fn describe_metrics() {
    metrics::describe_gauge!(
        ACTIVE_GAUGE,
        "Client subscriptions open, every transport together"
    );
    metrics::describe_gauge!(
        UPSTREAMS_GAUGE,
        "Subscriptions the gateway holds open to subgraphs (shared by identical client subscriptions)"
    );
    metrics::describe_gauge!(
        upstream::CONNECTIONS_GAUGE,
        "WebSocket connections the gateway holds open to subgraphs (shared by upstream subscriptions with the same forwarded headers)"
    );
    metrics::describe_gauge!(
        EVENT_STREAMS_GAUGE,
        "Server-sent event streams of the single connection mode, reserved or open"
    );
}

/// Counts one client subscription as open until dropped.
#[derive(Debug)]
struct ActiveSubscription(Arc<AtomicUsize>);

impl Drop for ActiveSubscription {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(ACTIVE_GAUGE).decrement(1.0);
    }
}
