//! The flags of the commands that serve the gateway: `serve` and `gateway`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args};
use gantry_gateway::GatewayConfig;
use gantry_gateway::cost::CostSettings;
use gantry_gateway::subscriptions::SubscriptionSettings;

use super::{CommonArgs, CorsArgs, heading, values};

/// The Redis that gateways (and the subgraphs beside them) share.
#[derive(Debug, Args, Clone)]
pub struct RedisArgs {
    /// Redis for state shared by every replica (persisted queries, caches, login
    /// throttling). Without it, that state lives in each process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, help_heading = heading::REDIS)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this deployment writes.
    #[arg(long, env = "GANTRY_REDIS_PREFIX", default_value = "gantry:", help_heading = heading::REDIS)]
    pub redis_prefix: String,
    /// The longest one Redis call may take before it counts as failed (a bare number is
    /// milliseconds).
    #[arg(long, env = "GANTRY_REDIS_TIMEOUT_MS", default_value = "50", value_parser = values::millis, help_heading = heading::REDIS)]
    pub redis_timeout_ms: u64,
}

impl Default for RedisArgs {
    fn default() -> Self {
        super::defaults()
    }
}

/// Settings of the gateway's HTTP endpoint, shared by `serve` and `gateway`.
#[derive(Debug, Args, Clone)]
pub struct GatewayOptions {
    /// Answer introspection (`__schema`, `__type`).
    #[arg(long, env = "GANTRY_INTROSPECTION", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub introspection: bool,
    /// Serve the GraphiQL playground at `/` and to browsers at `/graphql`.
    #[arg(long, env = "GANTRY_PLAYGROUND", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub playground: bool,
    /// The largest request body accepted, in bytes (larger: HTTP 413).
    #[arg(long, env = "GANTRY_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024, help_heading = heading::LIMITS)]
    pub max_body_bytes: usize,
    /// The most operations in one JSON-array batch (0 turns batching off).
    #[arg(long, env = "GANTRY_MAX_BATCH_SIZE", default_value_t = 10, help_heading = heading::LIMITS)]
    pub max_batch_size: usize,
    /// Operations this process runs through the request path at once; more wait for a
    /// turn, while cache hits and requests sharing an identical one in flight are answered
    /// (0: no limit). Default: 32 per core. Keeps an overloaded gateway's cache and Redis
    /// lookups answering instead of timing out behind thousands of running requests.
    #[arg(long, env = "GANTRY_MAX_CONCURRENT_OPERATIONS", help_heading = heading::GATEWAY)]
    pub max_concurrent_operations: Option<usize>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Cache query responses the subgraphs mark cacheable (in Redis when `REDIS_URL` is set).
    /// Default: on for `serve`, and for `gateway` when `REDIS_URL` is set (replicas without
    /// Redis would each keep their own copies, which mutations through another replica
    /// cannot reach).
    #[arg(long, env = "GANTRY_RESPONSE_CACHE", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub response_cache: Option<bool>,
    /// Cache `_entities` results per entity, shared by every operation. Default: false.
    #[arg(long, env = "GANTRY_ENTITY_CACHE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub entity_cache: bool,
    /// The longest any cached response is kept, whatever its `max-age` (a bare number is
    /// seconds).
    #[arg(
        long,
        env = "GANTRY_RESPONSE_CACHE_MAX_TTL_SECS",
        default_value = "300"
    , value_parser = values::seconds, help_heading = heading::GATEWAY)]
    pub response_cache_max_ttl_secs: u64,
    /// Identical concurrent subgraph query fetches share one request.
    #[arg(long, env = "GANTRY_DEDUP_SUBGRAPH", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub dedup_subgraph: bool,
    /// Identical concurrent client queries (same document, variables, viewer) share one run.
    #[arg(long, env = "GANTRY_DEDUP_OPERATIONS", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::GATEWAY)]
    pub dedup_operations: bool,
    /// A persisted-operation manifest (Apollo's format, e.g. from `gantry manifest`),
    /// reloaded when the file changes and on SIGHUP. Default: none.
    #[arg(long, env = "GANTRY_MANIFEST", help_heading = heading::PERSISTED)]
    pub manifest: Option<PathBuf>,
    /// Run only the manifest's operations (needs `--manifest`); APQ registration is off.
    /// Default: false.
    #[arg(long, env = "GANTRY_SAFELIST", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::PERSISTED)]
    pub safelist: bool,
    /// `NAME:VALUE` of a header that lets internal tools send free-form queries in
    /// safelist mode. Default: none.
    #[arg(long, env = "GANTRY_SAFELIST_BYPASS", hide_env_values = true, help_heading = heading::PERSISTED)]
    pub safelist_bypass_header: Option<gantry_gateway::persisted::BypassHeader>,
    /// Register APQ texts. Off keeps manifests and texts already registered. Default: true.
    #[arg(long, env = "GANTRY_APQ_REGISTRATION", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::PERSISTED)]
    pub apq_registration: Option<bool>,
    /// The longest APQ text registered, in bytes. Default: 65536.
    #[arg(long, env = "GANTRY_APQ_MAX_BYTES", help_heading = heading::PERSISTED)]
    pub apq_max_bytes: Option<usize>,
    /// APQ texts one client address may register per hour. Default: 100.
    #[arg(long, env = "GANTRY_APQ_REGISTRATIONS_PER_HOUR", help_heading = heading::PERSISTED)]
    pub apq_registrations_per_hour: Option<u32>,
    /// Operations per window per user (else client address); more get 429. Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_REQUESTS", help_heading = heading::RATE_LIMITS)]
    pub rate_limit_requests: Option<u32>,
    /// Estimated cost per window per user (else client address). Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_COST", help_heading = heading::RATE_LIMITS)]
    pub rate_limit_cost: Option<u32>,
    /// Operations per window per `apollographql-client-name`, all its users together.
    /// Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_CLIENT_NAME_REQUESTS", help_heading = heading::RATE_LIMITS)]
    pub rate_limit_client_name_requests: Option<u32>,
    /// The window of every rate limit (a bare number is seconds). Default: 60.
    #[arg(long, env = "GANTRY_RATE_LIMIT_WINDOW_SECS", value_parser = values::seconds, help_heading = heading::RATE_LIMITS)]
    pub rate_limit_window_secs: Option<u64>,
    /// Operations estimated above this cost (`@cost`/`@listSize`) are refused before any
    /// subgraph is asked (0: no maximum). Default: 10000.
    #[arg(long, env = "GANTRY_MAX_OPERATION_COST", help_heading = heading::LIMITS)]
    pub max_operation_cost: Option<u64>,
    /// The size the cost estimate gives a list nothing else sizes. Default: 10.
    #[arg(long, env = "GANTRY_COST_DEFAULT_LIST_SIZE", help_heading = heading::LIMITS)]
    pub cost_default_list_size: Option<u64>,
    /// The longest subgraph answer read, and the longest response sent, in bytes. Default:
    /// 33554432 (32 MiB).
    #[arg(long, env = "GANTRY_MAX_RESPONSE_BYTES", help_heading = heading::LIMITS)]
    pub max_response_bytes: Option<usize>,
    /// The most representations one `_entities` fetch may carry. Default: 10000.
    #[arg(long, env = "GANTRY_MAX_ENTITY_REPRESENTATIONS", help_heading = heading::LIMITS)]
    pub max_entity_representations: Option<usize>,
    /// A request header in which clients name progressive override labels to activate
    /// (comma-separated, e.g. `x-override-labels: beta,new-posts`): fields the supergraph
    /// moves with `@override(label: "beta")` then come from the new subgraph for that
    /// request. `percent(x)` labels need no header. Default: none.
    #[arg(long, env = "GANTRY_OVERRIDE_LABELS_HEADER", help_heading = heading::GATEWAY)]
    pub override_labels_header: Option<axum::http::HeaderName>,
    /// A YAML or JSON file of identity settings: where the token is read (header or
    /// cookie), external identity providers (JWKS, issuers, audiences, algorithms) and
    /// the `@policy` rules. Default: Gantry's own tokens from `Authorization`, no policies.
    #[arg(long, env = "GANTRY_AUTH_CONFIG", help_heading = heading::AUTH)]
    pub auth_config: Option<PathBuf>,
    /// Subscriptions one WebSocket connection may hold at once; one more is refused with
    /// `TOO_MANY_SUBSCRIPTIONS`. Default: 100.
    #[arg(long, env = "GANTRY_MAX_SUBSCRIPTIONS_PER_CONNECTION", help_heading = heading::LIMITS)]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Subscriptions this process holds at once, every transport together; one more is
    /// refused with `TOO_MANY_SUBSCRIPTIONS`. Default: 10000.
    #[arg(long, env = "GANTRY_MAX_SUBSCRIPTIONS", help_heading = heading::LIMITS)]
    pub max_subscriptions: Option<usize>,
    /// How often an idle subscription stream carries a heartbeat (a WebSocket `ping`, an
    /// SSE comment, a multipart `{}`; a bare number is seconds). Default: 15.
    #[arg(long, env = "GANTRY_SUBSCRIPTION_HEARTBEAT_SECS", value_parser = values::seconds, help_heading = heading::LIMITS)]
    pub subscription_heartbeat_secs: Option<u64>,
    /// How long a server-sent event stream reserved with `PUT` (single connection mode)
    /// waits for its client to open it before the reservation expires (a bare number is
    /// seconds). Default: 30.
    #[arg(long, env = "GANTRY_EVENT_STREAM_RESERVATION_TIMEOUT_SECS", value_parser = values::seconds, help_heading = heading::LIMITS)]
    pub event_stream_reservation_timeout_secs: Option<u64>,
    /// Event stream reservations one client address (an IPv6 address by its /64) may hold
    /// not yet opened; one more is refused with `429` and `TOO_MANY_RESERVATIONS`.
    /// Default: 16.
    #[arg(long, env = "GANTRY_MAX_PENDING_EVENT_STREAMS_PER_ADDRESS", help_heading = heading::LIMITS)]
    pub max_pending_event_streams_per_address: Option<usize>,
    /// Event stream reservations this process holds not yet opened, every address
    /// together; one more is refused with `429` and `TOO_MANY_RESERVATIONS`. Default: 1000.
    #[arg(long, env = "GANTRY_MAX_PENDING_EVENT_STREAMS", help_heading = heading::LIMITS)]
    pub max_pending_event_streams: Option<usize>,
    /// Events of its subgraph subscription a client subscription may fall behind by (its
    /// client not reading them in time); one further behind ends with
    /// `SUBSCRIPTION_LAGGED`. Default: 256.
    #[arg(long, env = "GANTRY_SUBSCRIPTION_EVENT_BACKLOG", help_heading = heading::LIMITS)]
    pub subscription_event_backlog: Option<usize>,
    /// Subscriptions to a subgraph one WebSocket connection carries; subscriptions with
    /// the same forwarded headers share connections, another opening past this many. Keep
    /// it within the subgraphs' per-connection limit. Default: 100.
    #[arg(long, env = "GANTRY_UPSTREAM_SUBSCRIPTIONS_PER_CONNECTION", help_heading = heading::LIMITS)]
    pub upstream_subscriptions_per_connection: Option<usize>,
    #[command(flatten)]
    pub limits: OperationLimitArgs,
    #[command(flatten)]
    pub cors: CorsArgs,
}

/// What one operation may ask for; past a limit it is refused with `400`,
/// `GRAPHQL_VALIDATION_FAILED` and `extensions.limit`. Defaults in
/// [`gantry_gateway::OperationLimits`].
#[derive(Debug, Args, Clone, Default)]
pub struct OperationLimitArgs {
    /// Tokens in an operation's text, counted before it is parsed. Default: 15000.
    #[arg(long, env = "GANTRY_MAX_TOKENS", help_heading = heading::LIMITS)]
    pub max_tokens: Option<u64>,
    /// Nesting of `{`, `[`, `(` in the text, and of selection sets with fragments
    /// expanded. Default: 32.
    #[arg(long, env = "GANTRY_MAX_NESTING", help_heading = heading::LIMITS)]
    pub max_nesting: Option<u64>,
    /// Fields on an operation's longest path, fragments expanded. Default: 20.
    #[arg(long, env = "GANTRY_MAX_DEPTH", help_heading = heading::LIMITS)]
    pub max_depth: Option<u64>,
    /// Aliased fields in an operation, fragments expanded. Default: 64.
    #[arg(long, env = "GANTRY_MAX_ALIASES", help_heading = heading::LIMITS)]
    pub max_aliases: Option<u64>,
    /// Fields at an operation's root, fragments expanded. Default: 64.
    #[arg(long, env = "GANTRY_MAX_ROOT_FIELDS", help_heading = heading::LIMITS)]
    pub max_root_fields: Option<u64>,
    /// Field selections in an operation once every fragment spread is expanded.
    /// Default: 1000.
    #[arg(long, env = "GANTRY_MAX_SELECTIONS", help_heading = heading::LIMITS)]
    pub max_selections: Option<u64>,
    /// Directives on one field, fragment spread or inline fragment. Default: 8.
    #[arg(long, env = "GANTRY_MAX_DIRECTIVES_PER_FIELD", help_heading = heading::LIMITS)]
    pub max_directives_per_field: Option<u64>,
    /// Nested `fields` / `interfaces` / `possibleTypes` / `inputFields` in introspection.
    /// Default: 2.
    #[arg(long, env = "GANTRY_MAX_INTROSPECTION_DEPTH", help_heading = heading::LIMITS)]
    pub max_introspection_depth: Option<u64>,
    /// Errors in one response; the rest are summed up in a last one. Default: 100.
    #[arg(long, env = "GANTRY_MAX_ERRORS", help_heading = heading::LIMITS)]
    pub max_errors: Option<usize>,
    /// How long preparing (parse, validate, plan) a document not seen before may take (a
    /// bare number is milliseconds). Default: 2000.
    #[arg(long, env = "GANTRY_PREPARATION_BUDGET_MS", value_parser = values::millis, help_heading = heading::LIMITS)]
    pub preparation_budget_ms: Option<u64>,
}

impl OperationLimitArgs {
    /// The limits, each flag over its default.
    pub fn limits(&self) -> gantry_gateway::OperationLimits {
        let d = gantry_gateway::OperationLimits::default();
        gantry_gateway::OperationLimits {
            max_tokens: self.max_tokens.unwrap_or(d.max_tokens),
            max_nesting: self.max_nesting.unwrap_or(d.max_nesting),
            max_depth: self.max_depth.unwrap_or(d.max_depth),
            max_aliases: self.max_aliases.unwrap_or(d.max_aliases),
            max_root_fields: self.max_root_fields.unwrap_or(d.max_root_fields),
            max_selections: self.max_selections.unwrap_or(d.max_selections),
            max_directives_per_field: self
                .max_directives_per_field
                .unwrap_or(d.max_directives_per_field),
            max_introspection_depth: self
                .max_introspection_depth
                .unwrap_or(d.max_introspection_depth),
            max_errors: self.max_errors.unwrap_or(d.max_errors).max(1),
            preparation_budget_ms: self
                .preparation_budget_ms
                .unwrap_or(d.preparation_budget_ms)
                .max(1),
        }
    }
}

/// Operations in progress per core when `--max-concurrent-operations` is not given: on 2
/// cores, 64 kept the signed-in feed's cache answering at 1,000 req/s where 256 and no
/// limit let nearly every Redis lookup time out (`bench/README.md`).
pub const CONCURRENT_OPERATIONS_PER_CORE: usize = 32;

impl Default for GatewayOptions {
    fn default() -> Self {
        super::defaults()
    }
}

impl GatewayOptions {
    /// The gateway's own settings; what is not given keeps [`GatewayConfig`]'s default.
    pub fn gateway_config(&self) -> GatewayConfig {
        let defaults = GatewayConfig::default();
        GatewayConfig {
            introspection: self.introspection,
            cost: CostSettings {
                max_operation_cost: self
                    .max_operation_cost
                    .unwrap_or(defaults.cost.max_operation_cost),
                default_list_size: self
                    .cost_default_list_size
                    .unwrap_or(defaults.cost.default_list_size),
            },
            max_entity_representations: self
                .max_entity_representations
                .unwrap_or(defaults.max_entity_representations),
            max_response_bytes: self
                .max_response_bytes
                .unwrap_or(defaults.max_response_bytes)
                .max(1),
            limits: self.limits.limits(),
        }
    }

    /// The subscription settings; what is not given keeps its default.
    pub fn subscription_settings(&self) -> SubscriptionSettings {
        let defaults = SubscriptionSettings::default();
        SubscriptionSettings {
            max_per_connection: self
                .max_subscriptions_per_connection
                .unwrap_or(defaults.max_per_connection),
            max_per_process: self.max_subscriptions.unwrap_or(defaults.max_per_process),
            heartbeat: self
                .subscription_heartbeat_secs
                .map_or(defaults.heartbeat, |secs| {
                    std::time::Duration::from_secs(secs.max(1))
                }),
            reservation_timeout: self
                .event_stream_reservation_timeout_secs
                .map_or(defaults.reservation_timeout, |secs| {
                    std::time::Duration::from_secs(secs.max(1))
                }),
            max_pending_streams_per_address: self
                .max_pending_event_streams_per_address
                .unwrap_or(defaults.max_pending_streams_per_address),
            max_pending_streams: self
                .max_pending_event_streams
                .unwrap_or(defaults.max_pending_streams),
            event_backlog: self
                .subscription_event_backlog
                .unwrap_or(defaults.event_backlog)
                .max(1),
            upstream_per_connection: self
                .upstream_subscriptions_per_connection
                .unwrap_or(defaults.upstream_per_connection)
                .max(1),
            ..defaults
        }
    }

    /// `--max-concurrent-operations`, or [`CONCURRENT_OPERATIONS_PER_CORE`] per core.
    pub fn concurrent_operations(&self) -> usize {
        self.max_concurrent_operations.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            CONCURRENT_OPERATIONS_PER_CORE * cores
        })
    }

    /// Whether query responses are cached: as configured, else on where every mutation
    /// reaches the cache (one process, or replicas sharing Redis).
    pub fn response_cache_enabled(&self, all_in_one: bool) -> bool {
        self.response_cache
            .unwrap_or(all_in_one || self.redis.redis_url.is_some())
    }
}

/// `NAME=URL` of a subgraph's GraphQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphUrl {
    pub name: String,
    pub url: String,
}

impl std::str::FromStr for SubgraphUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s
            .split_once('=')
            .ok_or("expected NAME=URL, e.g. users=http://127.0.0.1:4001/graphql")?;
        let (name, url) = (name.trim(), url.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "`{name}` is not a subgraph name (letters, digits, `_`, `-`)"
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        Ok(Self {
            name: name.to_owned(),
            url: url.to_owned(),
        })
    }
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// A supergraph SDL file composed by any standard tool (or give `--subgraph`).
    #[arg(long, env = "GANTRY_SUPERGRAPH", help_heading = heading::SUBGRAPHS)]
    pub supergraph: Option<PathBuf>,
    /// A subgraph to compose, as NAME=URL; repeat for each (or give `--supergraph`).
    #[arg(long, value_name = "NAME=URL", help_heading = heading::SUBGRAPHS)]
    pub subgraph: Vec<SubgraphUrl>,
    /// Address to listen on. Default 127.0.0.1:4000.
    #[arg(long, env = "GANTRY_LISTEN", help_heading = heading::SERVER)]
    pub listen: Option<SocketAddr>,
    /// Where to fetch token-verification keys. Default: the `users` subgraph's
    /// `/.well-known/jwks.json`, unless a key is configured.
    #[arg(long, env = "GANTRY_JWKS_URL", help_heading = heading::AUTH)]
    pub jwks_url: Option<String>,
    /// With `--subgraph`: how often to recompose (a bare number is seconds; 0: only on
    /// SIGHUP).
    #[arg(long, env = "GANTRY_RECOMPOSE_INTERVAL_SECS", default_value = "30", value_parser = values::seconds, help_heading = heading::SUBGRAPHS)]
    pub recompose_interval_secs: u64,
    /// How long a subgraph request may take, waiting for a slot included (a bare number is
    /// milliseconds).
    #[arg(long, env = "GANTRY_SUBGRAPH_TIMEOUT_MS", default_value = "10000", value_parser = values::millis, help_heading = heading::SUBGRAPHS)]
    pub subgraph_timeout_ms: u64,
    /// Requests in flight to one subgraph at once; more wait at the gateway.
    #[arg(long, env = "GANTRY_SUBGRAPH_MAX_IN_FLIGHT", default_value_t = 100, help_heading = heading::SUBGRAPHS)]
    pub subgraph_max_in_flight: usize,
    /// A YAML or JSON file of header rules: which client headers reach which subgraph
    /// (propagate, rename, insert, remove). Default: client name and version only.
    #[arg(long, env = "GANTRY_HEADERS_CONFIG", help_heading = heading::SUBGRAPHS)]
    pub headers_config: Option<PathBuf>,
    /// Speak HTTP/2 to every subgraph from the first byte (prior knowledge), also over
    /// plain `http://` (h2c): one connection per subgraph carries all requests at once.
    /// Every subgraph must speak HTTP/2 (Gantry's own do). Without it, `https://`
    /// subgraphs get HTTP/2 when their ALPN offers it. Default: false.
    #[arg(long, env = "GANTRY_SUBGRAPH_HTTP2", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::SUBGRAPHS)]
    pub subgraph_http2: bool,
    /// PEM certificate chain the gateway presents to subgraphs that ask for one (needs
    /// `--tls-client-key`). Default: none.
    #[arg(long, env = "GANTRY_TLS_CLIENT_CERT", help_heading = heading::SUBGRAPHS)]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of `--tls-client-cert`.
    #[arg(long, env = "GANTRY_TLS_CLIENT_KEY", help_heading = heading::SUBGRAPHS)]
    pub tls_client_key: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}
