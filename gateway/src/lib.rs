//! Gantry's federation gateway: composes subgraphs into a supergraph, then answers client
//! operations by validating them against the API schema, planning them with
//! hive-router-query-planner, executing the plan over subgraph transports and shaping the
//! merged data exactly as the client asked.
//!
//! [`execute_operation`] runs those stages top to bottom for one request.
//!
//! # Layout
//!
//! - [`auth`]: JWT verification at the gateway (configured keys or the users JWKS).
//! - [`revocations`]: ended sessions and deleted accounts, read from the users subgraph.
//! - [`graphql`]: wire types shared by every stage (request, response, errors, paths).
//! - [`supergraph`]: composition (with the `@join__type` fixes for root types and for
//!   unresolvable `@interfaceObject` keys), loading a supergraph SDL, and what derives from
//!   it (planner, API schema, URLs, plan cache).
//! - [`schema`]: name-indexed lookups over the client-facing API schema.
//! - [`cost`]: demand control's static cost estimate (`@cost`, `@listSize`) and its metric.
//! - [`validate`]: parsing and validation of the client operation; [`variables`]: variable
//!   coercion.
//! - [`plan`]: normalization and planning, through the supergraph's plan cache.
//! - [`transport`]: the [`SubgraphTransport`] trait, [`Transports`] and [`HttpTransport`].
//! - [`execute`]: runs a query plan (fetches, entity batches, flatten, parallel, conditions)
//!   and merges the results.
//! - [`response`]: shapes the merged data for the client (null propagation, fragments,
//!   abstract types with or without a concrete type, enum values outside the API schema,
//!   introspection).
//! - [`service`]: [`service::GatewayService`], the gateway behind the HTTP layer (auth,
//!   then the request path).
//! - [`cache`]: the response cache, in-flight de-duplication and their metrics.
//! - [`shared`]: the Redis connection replicas share state through, with bounded calls.
//! - [`persisted`]: persisted queries (APQ, manifests, safelisting) before parsing.
//! - [`rate_limit`]: rate limits per user, client address and client name (Redis-shared).
//! - [`pipeline`]: [`execute_operation`], the request path.
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

pub mod auth;
pub mod cache;
pub mod cors;
pub mod cost;
pub mod execute;
pub mod graphql;
pub mod graphql_http;
pub mod header_rules;
pub mod persisted;
pub mod pipeline;
pub mod plan;
pub mod playground;
pub mod rate_limit;
pub mod response;
pub mod revocations;
pub mod schema;
pub mod service;
pub mod shared;
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

pub use crate::graphql::{GraphQLError, GraphQLRequest, GraphQLResponse, PathSegment};
pub use crate::pipeline::{RequestContext, execute_operation};
pub use crate::supergraph::{
    SubgraphSdl, Supergraph, SupergraphError, SupergraphOptions, compose_supergraph_sdl,
};
pub use crate::transport::{
    HttpTransport, HttpTransportConfig, InProcessTransport, SubgraphRequest, SubgraphResponse,
    SubgraphTransport, TransportError, Transports,
};
use crate::validate::Validator;

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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            introspection: true,
            cost: cost::CostSettings::default(),
            max_entity_representations: 10_000,
            max_response_bytes: transport::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The running gateway: the current supergraph, the transports to its subgraphs, and config.
#[derive(Debug)]
pub struct Gateway {
    supergraph: RwLock<Arc<Supergraph>>,
    transports: Transports,
    validator: Validator,
    cost: cost::CostControl,
    max_entity_representations: usize,
    max_response_bytes: usize,
}

impl Gateway {
    pub fn new(supergraph: Supergraph, transports: Transports, config: GatewayConfig) -> Self {
        Self {
            supergraph: RwLock::new(Arc::new(supergraph)),
            transports,
            validator: Validator::new(config.introspection),
            cost: cost::CostControl::new(config.cost),
            max_entity_representations: config.max_entity_representations,
            max_response_bytes: config.max_response_bytes,
        }
    }

    /// Demand control: the cost estimate's settings and metric.
    pub fn cost(&self) -> &cost::CostControl {
        &self.cost
    }

    /// The estimated cost of a request, for a cost rate limit to charge; `None` when it
    /// does not validate (the request path answers it).
    pub fn estimated_cost(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<u64> {
        let supergraph = self.supergraph();
        let operation = self
            .validator
            .validate(supergraph.api_schema(), query, operation_name, variables)
            .ok()?;
        self.cost.estimate(supergraph.costs(), &operation).ok()
    }

    pub fn max_entity_representations(&self) -> usize {
        self.max_entity_representations
    }

    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The supergraph in use; requests already running keep the one they started with.
    pub fn supergraph(&self) -> Arc<Supergraph> {
        self.supergraph
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the supergraph (and with it the API schema and the plan cache).
    pub fn replace_supergraph(&self, supergraph: Supergraph) {
        *self
            .supergraph
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(supergraph);
    }

    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// The name of the operation an unnamed request's text selects, when that text is
    /// prepared (as it is once it ran).
    pub fn prepared_operation_name(&self, query: &str) -> Option<String> {
        self.supergraph()
            .api_schema()
            .prepared()
            .selected_name_of(query, None)
    }

    /// The kind of operation `query` selects: remembered when this text was validated
    /// before, else read by parsing it (without validating).
    pub fn operation_kind(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<validate::OperationKind, validate::RequestError> {
        let supergraph = self.supergraph();
        match supergraph
            .api_schema()
            .prepared()
            .kind_of(query, operation_name)
        {
            Some(kind) => Ok(kind),
            None => validate::operation_kind(query, operation_name),
        }
    }
}
