//! Gantry's federation gateway: composes subgraphs into a supergraph, then answers client
//! operations by preparing them once (operation limits, validation against the API schema,
//! planning with hive-router-query-planner), executing the plan over subgraph transports
//! and shaping the merged data exactly as the client asked.
//!
//! [`execute_operation`] runs those stages top to bottom for one request.
//!
//! [`app::GatewayApp::builder`] builds the gateway as a server (supergraph, transports,
//! keys, readiness, metrics) for the `gantry` binary and for an operator's own program.
//!
//! # Layout
//!
//! - [`app`]: the builder of the gateway server, and composing from subgraph URLs.
//! - [`caller`]: who is asking, as the gateway verified it (a leaf: [`auth`] makes it,
//!   [`authorization`], rate limits and header rules read it).
//! - [`auth`]: token verification at the gateway: Gantry's own tokens (configured keys or
//!   the users JWKS) and external identity providers (RS256, ES256, EdDSA JWKS).
//! - [`authorization`]: `@authenticated`, `@requiresScopes` and `@policy`, enforced per
//!   request by removing the fields a caller may not see before planning.
//! - [`revocations`]: ended sessions and deleted accounts, read from the users subgraph.
//! - [`graphql`]: wire types shared by every stage (the one client request type, the
//!   response, errors, paths).
//! - [`supergraph`]: composition (with the `@join__type` fixes for root types and for
//!   unresolvable `@interfaceObject` keys), loading a supergraph SDL, and what derives from
//!   it (planner, API schema, URLs).
//! - [`schema`]: name-indexed lookups over the client-facing API schema.
//! - [`cost`]: demand control's static cost estimate (`@cost`, `@listSize`) and its metric.
//! - [`defer_split`]: `@defer` — cutting a query into its primary operation and one operation
//!   per deferred fragment (a leaf: preparation notes whether there is anything to cut).
//! - [`defer`]: answering a query with deferred fragments in parts (incremental delivery).
//! - [`limits`]: operation limits, on the text before parsing and on the operation with
//!   fragments expanded, and where the request path's recursion is bounded.
//! - [`validate`]: parsing and validation of the client operation; [`variables`]: variable
//!   coercion.
//! - [`plan`]: normalization and planning, through the runtime's plan cache (concurrent
//!   misses of one operation plan it once).
//! - [`fetch`]: typed fetches — each fetch's kind and `_entities` calls, read from the
//!   plan's nodes once per plan (a leaf: the planner, the executor and the transports
//!   share it).
//! - [`override_labels`]: progressive override — the supergraph's `@override` labels and
//!   which are active for a request (a percentage drawn per request, others from a header).
//! - [`prepare`]: prepare once — limits, parsing, validation, (cost), planning — into the
//!   [`prepare::PreparedOperation`] every later stage takes.
//! - [`runtime`]: [`runtime::SupergraphRuntime`], the supergraph with its prepared
//!   operations (prepared off the async workers, within a budget, coalesced) and its plans.
//! - [`transport`]: the [`SubgraphTransport`] trait, [`Transports`] and [`HttpTransport`].
//! - [`execute`]: runs a query plan (fetches, entity batches, flatten, parallel, conditions)
//!   and merges the results.
//! - [`response`]: writes the client response straight to bytes from the merged data through
//!   the operation's projection, built once per prepared operation (null propagation,
//!   fragments, abstract types with or without a concrete type, enum values outside the API
//!   schema, introspection).
//! - [`service`]: [`service::GatewayService`], the gateway behind the HTTP layer (auth,
//!   then the request path).
//! - [`cache`]: the response cache (stored after the response is sent), in-flight
//!   de-duplication of operations and their metrics.
//! - [`inflight`]: sharing one run between identical concurrent work (client operations and
//!   subgraph fetches), with its counters; a leaf, so the cache and the transports both use it.
//! - [`shared`]: the Redis connection replicas share state through, with bounded calls.
//! - [`persisted`]: persisted queries (APQ, manifests, safelisting) before parsing.
//! - [`rate_limit`]: rate limits per user, client address and client name (Redis-shared).
//! - [`pipeline`]: [`execute_operation`], the request path.
//! - [`subscriptions`]: subscriptions over WebSocket, server-sent events and multipart
//!   HTTP, planned like queries, each upstream subscription shared by identical ones.
//! - [`cors`]: which web origins may call the gateway, answered before any GraphQL work.
//! - [`graphql_http`]: GraphQL over HTTP (POST, GET, batches, media types, status codes,
//!   compression, request ids) around any [`graphql_http::OperationExecutor`].
//! - [`header_rules`]: which client headers reach which subgraph (propagate, rename,
//!   insert, remove), applied by a transport wrapper.
//! - [`playground`]: the GraphiQL page and its bundled assets, built from npm at compile
//!   time.
//! - [`telemetry`]: the gateway's metrics and the headers that join subgraph logs and
//!   traces to the client request.
//! - `values`: GraphQL literal → JSON conversions.

pub mod app;
pub mod auth;
pub mod authorization;
pub mod cache;
pub mod caller;
pub mod cors;
pub mod cost;
pub mod defer;
pub mod defer_split;
pub mod execute;
pub mod fetch;
pub mod graphql;
pub mod graphql_http;
pub mod header_rules;
pub mod inflight;
pub mod limits;
pub mod override_labels;
pub mod persisted;
pub mod pipeline;
pub mod plan;
pub mod playground;
pub mod prepare;
pub mod rate_limit;
pub mod response;
pub mod revocations;
pub mod runtime;
pub mod schema;
pub mod service;
pub mod shared;
pub mod subscriptions;
pub mod supergraph;
pub mod telemetry;
pub mod transport;
pub mod validate;
mod values;
pub mod variables;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Semaphore;

pub use crate::graphql::{
    GraphQLError, GraphQLRequest, GraphQLResponse, OperationKind, PathSegment,
};
pub use crate::limits::OperationLimits;
pub use crate::pipeline::{RequestContext, execute_operation};
use crate::prepare::Preparer;
use crate::runtime::SupergraphRuntime;
pub use crate::supergraph::{
    SubgraphSdl, Supergraph, SupergraphError, SupergraphOptions, compose_supergraph_sdl,
};
pub use crate::transport::{
    HttpTransport, HttpTransportConfig, InProcessTransport, SubgraphRequest, SubgraphResponse,
    SubgraphSubscriber, SubgraphTransport, TransportError, Transports,
};

/// Gateway behaviour that is not derived from the supergraph.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Answer `__schema` / `__type`. When false they fail with `GRAPHQL_VALIDATION_FAILED`.
    /// Default: true.
    pub introspection: bool,
    /// The cost estimate's maximum and default list size.
    pub cost: cost::CostSettings,
    /// The most representations one `_entities` fetch may carry. Default: 10,000.
    pub max_entity_representations: usize,
    /// The longest response sent to a client, in bytes (and the default of the subgraph
    /// transports' limit). Default: 32 MiB.
    pub max_response_bytes: usize,
    /// What one operation may ask for (see [`limits`]). Default: [`OperationLimits::default`].
    pub limits: OperationLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            introspection: true,
            cost: cost::CostSettings::default(),
            max_entity_representations: 10_000,
            max_response_bytes: transport::DEFAULT_MAX_RESPONSE_BYTES,
            limits: OperationLimits::default(),
        }
    }
}

/// The running gateway: the runtime of the current supergraph, the transports to its
/// subgraphs, and what preparing operations needs.
#[derive(Debug)]
pub struct Gateway {
    runtime: RwLock<Arc<SupergraphRuntime>>,
    transports: Transports,
    cost: cost::CostControl,
    max_entity_representations: usize,
    max_response_bytes: usize,
    preparer: Arc<Preparer>,
    /// Turns on the blocking threads that prepare new documents: one per core, so
    /// preparations never take every thread a busy machine has.
    preparation_pool: Arc<Semaphore>,
    /// Counts supergraph replacements, for what must follow them (live subscriptions).
    supergraphs: tokio::sync::watch::Sender<u64>,
}

impl Gateway {
    pub fn new(supergraph: Supergraph, transports: Transports, config: GatewayConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let preparer = Arc::new(Preparer::new(config.limits, config.introspection));
        let preparation_pool = Arc::new(Semaphore::new(cores));
        let runtime =
            SupergraphRuntime::new(supergraph, preparer.clone(), preparation_pool.clone());
        Self {
            runtime: RwLock::new(Arc::new(runtime)),
            transports,
            cost: cost::CostControl::new(config.cost),
            max_entity_representations: config.max_entity_representations,
            max_response_bytes: config.max_response_bytes,
            preparer,
            preparation_pool,
            supergraphs: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Demand control: the cost estimate's settings and metric.
    pub fn cost(&self) -> &cost::CostControl {
        &self.cost
    }

    pub fn max_entity_representations(&self) -> usize {
        self.max_entity_representations
    }

    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The runtime in use; requests already running keep the one they started with.
    pub fn runtime(&self) -> Arc<SupergraphRuntime> {
        self.runtime
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The supergraph in use.
    pub fn supergraph(&self) -> Arc<Supergraph> {
        self.runtime().supergraph().clone()
    }

    /// Replaces the supergraph, and with it the API schema, the planner and every prepared
    /// operation.
    pub fn replace_supergraph(&self, supergraph: Supergraph) {
        let runtime = SupergraphRuntime::new(
            supergraph,
            self.preparer.clone(),
            self.preparation_pool.clone(),
        );
        *self.runtime.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(runtime);
        self.supergraphs.send_modify(|replaced| *replaced += 1);
    }

    /// Changes each time the supergraph is replaced.
    pub fn supergraph_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.supergraphs.subscribe()
    }

    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    pub fn limits(&self) -> &OperationLimits {
        self.preparer.limits()
    }
}
