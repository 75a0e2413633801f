//! The command line. Every setting can also come from the environment variable named in
//! its help; the defaults are the embedded, single-process ones.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gantry_gateway::GatewayConfig;
use gantry_gateway::cost::CostSettings;

mod cors;
pub use cors::CorsArgs;

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    about = "A GraphQL federation gateway with users and posts subgraphs"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The name this process has in traces (`service.name`): which part of the product it
    /// runs.
    pub fn service_name(&self) -> &'static str {
        match &self.command {
            Some(Command::Gateway(_)) => "gantry-gateway",
            Some(Command::Subgraph(args)) => match args.name {
                SubgraphName::Users => "gantry-users",
                SubgraphName::Posts => "gantry-posts",
            },
            _ => "gantry",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: migrations, the subgraphs and the gateway (the default).
    Serve(ServeArgs),
    /// The gateway alone, in front of subgraphs reached over HTTP.
    Gateway(GatewayArgs),
    /// Serve one subgraph on its own.
    Subgraph(SubgraphArgs),
    /// Compose subgraphs (fetched over HTTP) and print the supergraph SDL.
    Compose(ComposeArgs),
    /// Print the client-facing API schema (what `schema.graphql` holds).
    Schema,
    /// Apply, roll back or list database migrations.
    Migrate(MigrateArgs),
    /// Fill the database with realistic demo and benchmark data.
    Seed(SeedArgs),
    /// Print a persisted-operation manifest for a folder of `.graphql` operation files.
    Manifest(ManifestArgs),
}

/// Settings shared by every command.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Folder for the SQLite file and a generated signing key.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Database URL (`postgres://…` or `sqlite://…`). Default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database pool size. Default: 10 for PostgreSQL, 5 for SQLite.
    #[arg(long, env = "GANTRY_DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<u32>,
    /// A streaming read replica of the database (`postgres://…`): public reads go there,
    /// writes and a writer's own reads stay on `DATABASE_URL`. Default: none.
    #[arg(long, env = "DATABASE_READ_URL", global = true, hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// The replica is skipped while it lags more than this, in milliseconds. Default 5000.
    #[arg(long, env = "GANTRY_DATABASE_READ_MAX_LAG_MS", global = true)]
    pub database_read_max_lag_ms: Option<u64>,
    /// How often the replica's health and lag are checked, in milliseconds. Default 1000.
    #[arg(long, env = "GANTRY_DATABASE_READ_CHECK_MS", global = true)]
    pub database_read_check_ms: Option<u64>,
    /// How long after a write the writer's reads go to the primary, in milliseconds.
    /// Default 5000.
    #[arg(long, env = "GANTRY_READ_YOUR_WRITES_MS", global = true)]
    pub read_your_writes_ms: Option<u64>,
    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens.
    #[arg(
        long,
        env = "GANTRY_JWT_PRIVATE_KEY",
        global = true,
        hide_env_values = true
    )]
    pub jwt_private_key: Option<String>,
    /// File holding the Ed25519 private key (PKCS#8 PEM).
    #[arg(long, env = "GANTRY_JWT_PRIVATE_KEY_FILE", global = true)]
    pub jwt_private_key_file: Option<PathBuf>,
    /// `iss` of issued tokens, required of verified ones.
    #[arg(
        long,
        env = "GANTRY_JWT_ISSUER",
        default_value = "gantry",
        global = true
    )]
    pub jwt_issuer: String,
    /// `aud` of issued tokens, required of verified ones.
    #[arg(
        long,
        env = "GANTRY_JWT_AUDIENCE",
        default_value = "gantry",
        global = true
    )]
    pub jwt_audience: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(
        long,
        env = "GANTRY_ACCESS_TOKEN_TTL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub access_token_ttl_secs: u64,
    /// Trust `X-Forwarded-For` from any peer (only when nothing but your own proxy can
    /// reach this process); prefer `--trusted-proxies`.
    #[arg(
        long,
        env = "GANTRY_TRUST_FORWARDED_FOR",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_for: bool,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client: comma-separated CIDRs
    /// or addresses (your load balancers for `serve` and `gateway`, the gateways for
    /// `subgraph`). Default: none for `serve` and `gateway`, loopback for `subgraph`.
    #[arg(long, env = "GANTRY_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<gantry_kit::client::TrustedProxies>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Login attempts on one account before back-off starts (a success starts over).
    #[arg(
        long,
        env = "GANTRY_LOGIN_ACCOUNT_THRESHOLD",
        default_value_t = 5,
        global = true
    )]
    pub login_account_threshold: u32,
    /// Login attempts from one client address before back-off starts.
    #[arg(
        long,
        env = "GANTRY_LOGIN_ADDRESS_THRESHOLD",
        default_value_t = 20,
        global = true
    )]
    pub login_address_threshold: u32,
    /// First back-off wait in milliseconds; it doubles with each further failure.
    #[arg(
        long,
        env = "GANTRY_LOGIN_BACKOFF_BASE_MS",
        default_value_t = 1000,
        global = true
    )]
    pub login_backoff_base_ms: u64,
    /// Longest back-off wait, in seconds.
    #[arg(
        long,
        env = "GANTRY_LOGIN_BACKOFF_MAX_SECS",
        default_value_t = 900,
        global = true
    )]
    pub login_backoff_max_secs: u64,
    /// Accounts one client address may register per hour. Default 20.
    #[arg(long, env = "GANTRY_REGISTRATIONS_PER_HOUR", global = true)]
    pub registrations_per_hour: Option<u32>,
    /// How often the posts subgraph polls the outbox for deleted accounts, in milliseconds.
    #[arg(
        long,
        env = "GANTRY_OUTBOX_POLL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub outbox_poll_ms: u64,
    /// How long DataLoaders gather keys before one batched query, in milliseconds.
    #[arg(
        long,
        env = "GANTRY_BATCH_DELAY_MS",
        default_value_t = 1,
        global = true
    )]
    pub batch_delay_ms: u64,
    /// Seconds a process waits at start for the peers it needs: a gateway for its subgraphs
    /// to answer, the posts subgraph for the signing key the users subgraph generates into
    /// a shared data dir. 0: no wait.
    #[arg(
        long,
        env = "GANTRY_STARTUP_WAIT_SECS",
        default_value_t = 60,
        global = true
    )]
    pub startup_wait_secs: u64,
    /// Seconds in-flight requests may run on after SIGTERM or Ctrl-C.
    #[arg(
        long,
        env = "GANTRY_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_secs: u64,
}

/// Connection and request limits of every server command; defaults in
/// [`gantry_kit::server::ServerLimits`].
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// Milliseconds from a request's first byte to its last header byte. Default 10000.
    #[arg(long, env = "GANTRY_HEADER_READ_TIMEOUT_MS", global = true)]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a connection may wait with no request in progress. Default 75000.
    #[arg(long, env = "GANTRY_IDLE_TIMEOUT_MS", global = true)]
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds to receive a whole request body (slower: 408). Default 30000.
    #[arg(long, env = "GANTRY_BODY_READ_TIMEOUT_MS", global = true)]
    pub body_read_timeout_ms: Option<u64>,
    /// Milliseconds to answer a request once its body is in (later: 504,
    /// `GATEWAY_TIMEOUT`). Default 30000.
    #[arg(long, env = "GANTRY_REQUEST_TIMEOUT_MS", global = true)]
    pub request_timeout_ms: Option<u64>,
    /// Connections open at once; more wait in the listen backlog. Default 10000, and never
    /// more than three quarters of the open-file limit.
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Bytes of request bodies held at once across all requests. Default 67108864 (64 MiB).
    #[arg(long, env = "GANTRY_BODY_BYTES_IN_FLIGHT", global = true)]
    pub body_bytes_in_flight: Option<usize>,
    /// Serve `/metrics` on this address instead of the main listener (e.g. a port only
    /// the scraper reaches). Default: on the main listener.
    #[arg(long, env = "GANTRY_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP/HTTP collector to export traces to (its base URL, e.g. `http://otel:4318`;
    /// spans go to `/v1/traces`), when built with the `otel` feature. Default: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:4000.
    #[arg(long, env = "GANTRY_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

/// Settings of the gateway's HTTP endpoint, shared by `serve` and `gateway`.
#[derive(Debug, Args, Clone)]
pub struct GatewayOptions {
    /// Answer introspection (`__schema`, `__type`).
    #[arg(long, env = "GANTRY_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// Serve the GraphiQL playground at `/` and to browsers at `/graphql`.
    #[arg(long, env = "GANTRY_PLAYGROUND", default_value_t = true, action = clap::ArgAction::Set)]
    pub playground: bool,
    /// The largest request body accepted, in bytes (larger: HTTP 413).
    #[arg(long, env = "GANTRY_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The most operations in one JSON-array batch (0 turns batching off).
    #[arg(long, env = "GANTRY_MAX_BATCH_SIZE", default_value_t = 10)]
    pub max_batch_size: usize,
    /// Operations this process runs through the request path at once; more wait for a
    /// turn, while cache hits and requests sharing an identical one in flight are answered
    /// (0: no limit). Default: 32 per core. Keeps an overloaded gateway's cache and Redis
    /// lookups answering instead of timing out behind thousands of running requests.
    #[arg(long, env = "GANTRY_MAX_CONCURRENT_OPERATIONS")]
    pub max_concurrent_operations: Option<usize>,
    /// Redis for state shared by every gateway replica (persisted queries, caches).
    /// Without it, that state lives in this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this deployment writes.
    #[arg(long, env = "GANTRY_REDIS_PREFIX", default_value = "gantry:")]
    pub redis_prefix: String,
    /// The longest one Redis call may take, in milliseconds, before it counts as failed.
    #[arg(long, env = "GANTRY_REDIS_TIMEOUT_MS", default_value_t = 50)]
    pub redis_timeout_ms: u64,
    /// Cache query responses the subgraphs mark cacheable (in Redis when `REDIS_URL` is set).
    /// Default: on for `serve`, and for `gateway` when `REDIS_URL` is set (replicas without
    /// Redis would each keep their own copies, which mutations through another replica
    /// cannot reach).
    #[arg(long, env = "GANTRY_RESPONSE_CACHE", action = clap::ArgAction::Set)]
    pub response_cache: Option<bool>,
    /// Cache `_entities` results per entity, shared by every operation. Default: false.
    #[arg(long, env = "GANTRY_ENTITY_CACHE", default_value_t = false, action = clap::ArgAction::Set)]
    pub entity_cache: bool,
    /// The longest any cached response is kept, in seconds, whatever its `max-age`.
    #[arg(
        long,
        env = "GANTRY_RESPONSE_CACHE_MAX_TTL_SECS",
        default_value_t = 300
    )]
    pub response_cache_max_ttl_secs: u64,
    /// Identical concurrent subgraph query fetches share one request.
    #[arg(long, env = "GANTRY_DEDUP_SUBGRAPH", default_value_t = true, action = clap::ArgAction::Set)]
    pub dedup_subgraph: bool,
    /// Identical concurrent client queries (same document, variables, viewer) share one run.
    #[arg(long, env = "GANTRY_DEDUP_OPERATIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub dedup_operations: bool,
    /// A persisted-operation manifest (Apollo's format, e.g. from `gantry manifest`),
    /// reloaded when the file changes and on SIGHUP. Default: none.
    #[arg(long, env = "GANTRY_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Run only the manifest's operations (needs `--manifest`); APQ registration is off.
    /// Default: false.
    #[arg(long, env = "GANTRY_SAFELIST", default_value_t = false, requires = "manifest", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub safelist: bool,
    /// `NAME:VALUE` of a header that lets internal tools send free-form queries in
    /// safelist mode. Default: none.
    #[arg(long, env = "GANTRY_SAFELIST_BYPASS", hide_env_values = true)]
    pub safelist_bypass_header: Option<gantry_gateway::persisted::BypassHeader>,
    /// Register APQ texts. Off keeps manifests and texts already registered. Default: true.
    #[arg(long, env = "GANTRY_APQ_REGISTRATION", action = clap::ArgAction::Set)]
    pub apq_registration: Option<bool>,
    /// The longest APQ text registered, in bytes. Default: 65536.
    #[arg(long, env = "GANTRY_APQ_MAX_BYTES")]
    pub apq_max_bytes: Option<usize>,
    /// APQ texts one client address may register per hour. Default: 100.
    #[arg(long, env = "GANTRY_APQ_REGISTRATIONS_PER_HOUR")]
    pub apq_registrations_per_hour: Option<u32>,
    /// Operations per window per user (else client address); more get 429. Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_REQUESTS")]
    pub rate_limit_requests: Option<u32>,
    /// Estimated cost per window per user (else client address). Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_COST")]
    pub rate_limit_cost: Option<u32>,
    /// Operations per window per `apollographql-client-name`, all its users together.
    /// Default: off.
    #[arg(long, env = "GANTRY_RATE_LIMIT_CLIENT_NAME_REQUESTS")]
    pub rate_limit_client_name_requests: Option<u32>,
    /// The window of every rate limit, in seconds. Default: 60.
    #[arg(long, env = "GANTRY_RATE_LIMIT_WINDOW_SECS")]
    pub rate_limit_window_secs: Option<u64>,
    /// Operations estimated above this cost (`@cost`/`@listSize`) are refused before any
    /// subgraph is asked (0: no maximum). Default: 10000.
    #[arg(long, env = "GANTRY_MAX_OPERATION_COST")]
    pub max_operation_cost: Option<u64>,
    /// The size the cost estimate gives a list nothing else sizes. Default: 10.
    #[arg(long, env = "GANTRY_COST_DEFAULT_LIST_SIZE")]
    pub cost_default_list_size: Option<u64>,
    /// The longest subgraph answer read, and the longest response sent, in bytes. Default:
    /// 33554432 (32 MiB).
    #[arg(long, env = "GANTRY_MAX_RESPONSE_BYTES")]
    pub max_response_bytes: Option<usize>,
    /// The most representations one `_entities` fetch may carry. Default: 10000.
    #[arg(long, env = "GANTRY_MAX_ENTITY_REPRESENTATIONS")]
    pub max_entity_representations: Option<usize>,
    /// A YAML or JSON file of identity settings: where the token is read (header or
    /// cookie), external identity providers (JWKS, issuers, audiences, algorithms) and
    /// the `@policy` rules. Default: Gantry's own tokens from `Authorization`, no policies.
    #[arg(long, env = "GANTRY_AUTH_CONFIG")]
    pub auth_config: Option<PathBuf>,
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
    #[arg(long, env = "GANTRY_MAX_TOKENS")]
    pub max_tokens: Option<u64>,
    /// Nesting of `{`, `[`, `(` in the text, and of selection sets with fragments
    /// expanded. Default: 32.
    #[arg(long, env = "GANTRY_MAX_NESTING")]
    pub max_nesting: Option<u64>,
    /// Fields on an operation's longest path, fragments expanded. Default: 20.
    #[arg(long, env = "GANTRY_MAX_DEPTH")]
    pub max_depth: Option<u64>,
    /// Aliased fields in an operation, fragments expanded. Default: 64.
    #[arg(long, env = "GANTRY_MAX_ALIASES")]
    pub max_aliases: Option<u64>,
    /// Fields at an operation's root, fragments expanded. Default: 64.
    #[arg(long, env = "GANTRY_MAX_ROOT_FIELDS")]
    pub max_root_fields: Option<u64>,
    /// Field selections in an operation once every fragment spread is expanded.
    /// Default: 1000.
    #[arg(long, env = "GANTRY_MAX_SELECTIONS")]
    pub max_selections: Option<u64>,
    /// Directives on one field, fragment spread or inline fragment. Default: 8.
    #[arg(long, env = "GANTRY_MAX_DIRECTIVES_PER_FIELD")]
    pub max_directives_per_field: Option<u64>,
    /// Nested `fields` / `interfaces` / `possibleTypes` / `inputFields` in introspection.
    /// Default: 2.
    #[arg(long, env = "GANTRY_MAX_INTROSPECTION_DEPTH")]
    pub max_introspection_depth: Option<u64>,
    /// Errors in one response; the rest are summed up in a last one. Default: 100.
    #[arg(long, env = "GANTRY_MAX_ERRORS")]
    pub max_errors: Option<usize>,
    /// Milliseconds to prepare (parse, validate, plan) a document not seen before.
    /// Default: 2000.
    #[arg(long, env = "GANTRY_PREPARATION_BUDGET_MS")]
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
        Self {
            introspection: true,
            playground: true,
            max_body_bytes: 2 * 1024 * 1024,
            max_batch_size: 10,
            max_concurrent_operations: None,
            redis_url: None,
            redis_prefix: "gantry:".into(),
            redis_timeout_ms: 50,
            response_cache: None,
            entity_cache: false,
            response_cache_max_ttl_secs: 300,
            dedup_subgraph: true,
            dedup_operations: true,
            manifest: None,
            safelist: false,
            safelist_bypass_header: None,
            apq_registration: None,
            apq_max_bytes: None,
            apq_registrations_per_hour: None,
            rate_limit_requests: None,
            rate_limit_cost: None,
            rate_limit_client_name_requests: None,
            rate_limit_window_secs: None,
            max_operation_cost: None,
            cost_default_list_size: None,
            max_response_bytes: None,
            max_entity_representations: None,
            auth_config: None,
            limits: OperationLimitArgs::default(),
            cors: CorsArgs::default(),
        }
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
            .unwrap_or(all_in_one || self.redis_url.is_some())
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
    /// A supergraph SDL file composed by any standard tool.
    #[arg(
        long,
        env = "GANTRY_SUPERGRAPH",
        conflicts_with = "subgraph",
        required_unless_present = "subgraph"
    )]
    pub supergraph: Option<PathBuf>,
    /// A subgraph to compose, as NAME=URL; repeat for each.
    #[arg(long, value_name = "NAME=URL")]
    pub subgraph: Vec<SubgraphUrl>,
    /// Address to listen on. Default 127.0.0.1:4000.
    #[arg(long, env = "GANTRY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where to fetch token-verification keys. Default: the `users` subgraph's
    /// `/.well-known/jwks.json`, unless a key is configured.
    #[arg(long, env = "GANTRY_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// With `--subgraph`: recompose every this many seconds (0: only on SIGHUP).
    #[arg(long, env = "GANTRY_RECOMPOSE_INTERVAL_SECS", default_value_t = 30)]
    pub recompose_interval_secs: u64,
    /// Time a subgraph request may take, in milliseconds (waiting for a slot included).
    #[arg(long, env = "GANTRY_SUBGRAPH_TIMEOUT_MS", default_value_t = 10_000)]
    pub subgraph_timeout_ms: u64,
    /// Requests in flight to one subgraph at once; more wait at the gateway.
    #[arg(long, env = "GANTRY_SUBGRAPH_MAX_IN_FLIGHT", default_value_t = 100)]
    pub subgraph_max_in_flight: usize,
    /// A YAML or JSON file of header rules: which client headers reach which subgraph
    /// (propagate, rename, insert, remove). Default: client name and version only.
    #[arg(long, env = "GANTRY_HEADERS_CONFIG")]
    pub headers_config: Option<PathBuf>,
    /// PEM file of CA certificates subgraphs' `https://` certificates may chain to, besides
    /// the public roots. Default: public roots only.
    #[arg(long, env = "GANTRY_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM certificate chain the gateway presents to subgraphs that ask for one (needs
    /// `--tls-client-key`). Default: none.
    #[arg(long, env = "GANTRY_TLS_CLIENT_CERT", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of `--tls-client-cert`.
    #[arg(long, env = "GANTRY_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// A subgraph to compose, as NAME=URL; repeat for each.
    #[arg(long, value_name = "NAME=URL", required = true)]
    pub subgraph: Vec<SubgraphUrl>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SubgraphName {
    Users,
    Posts,
}

#[derive(Debug, Args)]
pub struct SubgraphArgs {
    /// Which subgraph.
    pub name: SubgraphName,
    /// Address to listen on. Default 127.0.0.1:4001 for users, 127.0.0.1:4002 for posts.
    #[arg(long, env = "GANTRY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The gateways' Redis. The posts subgraph uses it to drop cached responses about
    /// entities an account deletion changed (the gateways see no mutation for those), and,
    /// with `DATABASE_READ_URL`, to tell its other replicas who wrote lately (their reads
    /// stay on the primary); the users subgraph counts login attempts and registrations in
    /// it, for every replica.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// The gateways' Redis key prefix.
    #[arg(long, env = "GANTRY_REDIS_PREFIX", default_value = "gantry:")]
    pub redis_prefix: String,
    /// The longest one Redis call may take, in milliseconds.
    #[arg(long, env = "GANTRY_REDIS_TIMEOUT_MS", default_value_t = 50)]
    pub redis_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum MigrateAction {
    /// Apply every pending migration.
    #[default]
    Up,
    /// Roll back the last `--steps` migrations.
    Down,
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[arg(value_enum, default_value_t)]
    pub action: MigrateAction,
    /// How many migrations `down` rolls back.
    #[arg(long, default_value_t = 1)]
    pub steps: u32,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The folder; every `.graphql` file in it and its subfolders is read.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many users to create.
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// How many posts each user writes on average (the distribution is skewed).
    #[arg(long, default_value_t = 10)]
    pub posts_per_user: u32,
    /// Seed of the random generator: the same seed creates the same data, and running it
    /// again adds nothing.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Password of every seeded user.
    #[arg(long, default_value = "seeded orbit lantern")]
    pub password: String,
    /// Hide the progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_subgraph_is_name_equals_url() {
        let parsed: SubgraphUrl = "users=http://127.0.0.1:4001/graphql"
            .parse()
            .expect("valid");
        assert_eq!(parsed.name, "users");
        assert!("users".parse::<SubgraphUrl>().is_err());
        assert!("users=ftp://x".parse::<SubgraphUrl>().is_err());
    }
}
