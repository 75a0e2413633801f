//! The command line, and the settings tree behind it. Every setting is a flag of the commands
//! that use it, an environment variable (named in its help) and a key of the configuration
//! file (`--config`, in the section named by its help heading); flags win over the
//! environment, the environment over the file, the file over the defaults, which are
//! defined once, on the flag.
//!
//! # Layout
//! - this module — the commands and their flags, grouped by section.
//! - [`gateway`] — the flags of commands that serve the gateway (`serve`, `gateway`).
//! - [`cors`] — the CORS flags.
//! - [`values`] — how durations and booleans are read, the same from every source.
//! - [`file`] — the configuration file: its sections and keys, read into clap defaults.
//! - [`load`] — the whole start: the default command, the file, the environment, the flags.
//! - [`print`] — `gantry config`: the effective settings as a configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use gantry_kit::server::ServerLimits;
use gantry_users::ThrottleSettings;

mod cors;
pub mod file;
mod gateway;
pub mod load;
pub mod print;
pub mod values;

pub use cors::CorsArgs;
pub use gateway::{
    CONCURRENT_OPERATIONS_PER_CORE, GatewayArgs, GatewayOptions, OperationLimitArgs, RedisArgs,
    SubgraphUrl,
};
pub use load::{SettingsError, parse};

/// The help headings of the flags; each is a section of the configuration file
/// ([`file::section_of`]).
pub mod heading {
    pub const SERVER: &str = "Server";
    pub const DATABASE: &str = "Database";
    pub const AUTH: &str = "Auth";
    pub const REDIS: &str = "Redis";
    pub const GATEWAY: &str = "Gateway";
    pub const LIMITS: &str = "Limits";
    pub const PERSISTED: &str = "Persisted queries";
    pub const RATE_LIMITS: &str = "Rate limits";
    pub const CORS: &str = "CORS";
    pub const SUBGRAPHS: &str = "Subgraphs";
    pub const COMPOSE: &str = "Compose";
    pub const MIGRATE: &str = "Migrate";
    pub const SEED: &str = "Seed";
    pub const EVENTS: &str = "Events";
}

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    about = "A GraphQL federation gateway with users and posts subgraphs",
    after_help = "With no command, or with only flags, `gantry` runs `gantry serve`."
)]
pub struct Cli {
    /// A TOML file of settings: sections and keys as the flags' headings and names. Flags
    /// and environment variables override it.
    #[arg(long, env = "GANTRY_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The name this process has in traces (`service.name`): which part of the product it
    /// runs.
    pub fn service_name(&self) -> &'static str {
        match &self.command {
            Command::Gateway(_) => "gantry-gateway",
            Command::Subgraph(args) => match args.name {
                SubgraphName::Users => "gantry-users",
                SubgraphName::Posts => "gantry-posts",
            },
            _ => "gantry",
        }
    }

    /// The OTLP collector of a server command.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        match &self.command {
            Command::Serve(args) => args.common.server.otlp_endpoint.as_deref(),
            Command::Gateway(args) => args.common.server.otlp_endpoint.as_deref(),
            Command::Subgraph(args) => args.common.server.otlp_endpoint.as_deref(),
            _ => None,
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
    /// Print the effective configuration (file, environment, defaults) as a configuration
    /// file, secrets left out.
    Config,
}

/// The values clap gives a group of flags when nothing sets them: the defaults, defined
/// once on the flags (environment variables are not read).
pub(crate) fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"))
        .mut_args(|arg| arg.env(None))
        .no_binary_name(true);
    command
        .try_get_matches_from(std::iter::empty::<String>())
        .and_then(|matches| T::from_arg_matches(&matches))
        .unwrap_or_else(|err| panic!("every default of the flags parses: {err}"))
}

/// Where the data lives; every command that opens the database takes these.
#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// Folder for the SQLite file and a generated signing key.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = "./data", help_heading = heading::DATABASE)]
    pub data_dir: PathBuf,
    /// Database URL (`postgres://…` or `sqlite://…`). Default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, help_heading = heading::DATABASE)]
    pub database_url: Option<String>,
    /// Database pool size. Default: 10 for PostgreSQL, 5 for SQLite.
    #[arg(long, env = "GANTRY_DATABASE_MAX_CONNECTIONS", help_heading = heading::DATABASE)]
    pub database_max_connections: Option<u32>,
}

impl Default for DatabaseArgs {
    fn default() -> Self {
        defaults()
    }
}

/// Settings of every server command (`serve`, `gateway`, `subgraph`).
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A streaming read replica of the database (`postgres://…`): public reads go there,
    /// writes and a writer's own reads stay on `DATABASE_URL`. Default: none.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true, help_heading = heading::DATABASE)]
    pub database_read_url: Option<String>,
    /// The replica is skipped while it lags more than this (a bare number is milliseconds).
    /// Default 5000.
    #[arg(long, env = "GANTRY_DATABASE_READ_MAX_LAG_MS", value_parser = values::millis, help_heading = heading::DATABASE)]
    pub database_read_max_lag_ms: Option<u64>,
    /// How often the replica's health and lag are checked (a bare number is milliseconds).
    /// Default 1000.
    #[arg(long, env = "GANTRY_DATABASE_READ_CHECK_MS", value_parser = values::millis, help_heading = heading::DATABASE)]
    pub database_read_check_ms: Option<u64>,
    /// How long after a write the writer's reads go to the primary (a bare number is
    /// milliseconds). Default 5000.
    #[arg(long, env = "GANTRY_READ_YOUR_WRITES_MS", value_parser = values::millis, help_heading = heading::DATABASE)]
    pub read_your_writes_ms: Option<u64>,
    /// How often the posts subgraph polls the outbox for deleted accounts (a bare number
    /// is milliseconds).
    #[arg(long, env = "GANTRY_OUTBOX_POLL_MS", default_value = "1000", value_parser = values::millis, help_heading = heading::DATABASE)]
    pub outbox_poll_ms: u64,
    /// Authors followed by more accounts than this have their posts read at feed time
    /// instead of written to each follower's timeline. Default 1000.
    #[arg(long, env = "GANTRY_FEED_FANOUT_MAX_FOLLOWERS", help_heading = heading::DATABASE)]
    pub feed_fanout_max_followers: Option<u64>,
    /// Entries kept in each viewer's home timeline; older pages are read from follows and
    /// posts. Default 800.
    #[arg(long, env = "GANTRY_FEED_TIMELINE_CAP", help_heading = heading::DATABASE)]
    pub feed_timeline_cap: Option<u64>,
    /// Which query answers the home feed: `hybrid` (timelines merged with the
    /// most-followed authors' posts) or `fanout-on-read` (`follows` and `posts` alone, as
    /// before timelines; they are still kept, so switching back needs nothing).
    #[arg(long, env = "GANTRY_FEED_READ", value_enum, default_value_t, help_heading = heading::DATABASE)]
    pub feed_read: FeedReadArg,
    /// How long DataLoaders gather keys before one batched query (a bare number is
    /// milliseconds).
    #[arg(long, env = "GANTRY_BATCH_DELAY_MS", default_value = "1", value_parser = values::millis, help_heading = heading::DATABASE)]
    pub batch_delay_ms: u64,
    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens.
    #[arg(long, env = "GANTRY_JWT_PRIVATE_KEY", hide_env_values = true, help_heading = heading::AUTH)]
    pub jwt_private_key: Option<String>,
    /// File holding the Ed25519 private key (PKCS#8 PEM).
    #[arg(long, env = "GANTRY_JWT_PRIVATE_KEY_FILE", help_heading = heading::AUTH)]
    pub jwt_private_key_file: Option<PathBuf>,
    /// `iss` of issued tokens, required of verified ones.
    #[arg(long, env = "GANTRY_JWT_ISSUER", default_value = "gantry", help_heading = heading::AUTH)]
    pub jwt_issuer: String,
    /// `aud` of issued tokens, required of verified ones.
    #[arg(long, env = "GANTRY_JWT_AUDIENCE", default_value = "gantry", help_heading = heading::AUTH)]
    pub jwt_audience: String,
    /// Lifetime of access tokens (a bare number is seconds).
    #[arg(long, env = "GANTRY_ACCESS_TOKEN_TTL_SECS", default_value = "900", value_parser = values::seconds, help_heading = heading::AUTH)]
    pub access_token_ttl_secs: u64,
    /// Login attempts on one account before back-off starts (a success starts over).
    #[arg(long, env = "GANTRY_LOGIN_ACCOUNT_THRESHOLD", default_value_t = ThrottleSettings::default().account_threshold, help_heading = heading::AUTH)]
    pub login_account_threshold: u32,
    /// Login attempts from one client address before back-off starts.
    #[arg(long, env = "GANTRY_LOGIN_ADDRESS_THRESHOLD", default_value_t = ThrottleSettings::default().address_threshold, help_heading = heading::AUTH)]
    pub login_address_threshold: u32,
    /// First back-off wait (a bare number is milliseconds); it doubles with each further
    /// failure.
    #[arg(long, env = "GANTRY_LOGIN_BACKOFF_BASE_MS", default_value_t = values::whole_millis(ThrottleSettings::default().base_delay), value_parser = values::millis, help_heading = heading::AUTH)]
    pub login_backoff_base_ms: u64,
    /// Longest back-off wait (a bare number is seconds).
    #[arg(long, env = "GANTRY_LOGIN_BACKOFF_MAX_SECS", default_value_t = ThrottleSettings::default().max_delay.as_secs(), value_parser = values::seconds, help_heading = heading::AUTH)]
    pub login_backoff_max_secs: u64,
    /// Accounts one client address may register per hour. Default 20.
    #[arg(long, env = "GANTRY_REGISTRATIONS_PER_HOUR", help_heading = heading::AUTH)]
    pub registrations_per_hour: Option<u32>,
    /// Subscriptions one WebSocket connection to a subgraph may hold at once; more are
    /// refused with `TOO_MANY_SUBSCRIPTIONS`. Default 100.
    #[arg(long, env = "GANTRY_SUBGRAPH_SUBSCRIPTIONS_PER_CONNECTION", help_heading = heading::EVENTS)]
    pub subgraph_subscriptions_per_connection: Option<usize>,
    /// Subscriptions one subgraph may hold at once in this process, over all its
    /// connections. Default 10000.
    #[arg(long, env = "GANTRY_SUBGRAPH_SUBSCRIPTIONS_PER_PROCESS", help_heading = heading::EVENTS)]
    pub subgraph_subscriptions_per_process: Option<usize>,
    /// How often a subgraph pings its subscription WebSockets (a bare number is seconds).
    /// Default 15.
    #[arg(long, env = "GANTRY_SUBGRAPH_SUBSCRIPTION_KEEPALIVE_SECS", value_parser = values::seconds, help_heading = heading::EVENTS)]
    pub subgraph_subscription_keepalive_secs: Option<u64>,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl Default for CommonArgs {
    fn default() -> Self {
        defaults()
    }
}

/// Connection and request limits of every server command; defaults in
/// [`gantry_kit::server::ServerLimits`].
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Trust `X-Forwarded-For` from any peer (only when nothing but your own proxy can
    /// reach this process); prefer `--trusted-proxies`.
    #[arg(long, env = "GANTRY_TRUST_FORWARDED_FOR", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::SERVER)]
    pub trust_forwarded_for: bool,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client: comma-separated CIDRs
    /// or addresses (your load balancers for `serve` and `gateway`, the gateways for
    /// `subgraph`). Default: none for `serve` and `gateway`, loopback for `subgraph`.
    #[arg(long, env = "GANTRY_TRUSTED_PROXIES", help_heading = heading::SERVER)]
    pub trusted_proxies: Option<gantry_kit::client::TrustedProxies>,
    /// From a request's first byte to its last header byte (a bare number is
    /// milliseconds). Default 10000.
    #[arg(long, env = "GANTRY_HEADER_READ_TIMEOUT_MS", value_parser = values::millis, help_heading = heading::SERVER)]
    pub header_read_timeout_ms: Option<u64>,
    /// How long a connection may wait with no request in progress (a bare number is
    /// milliseconds). Default 75000.
    #[arg(long, env = "GANTRY_IDLE_TIMEOUT_MS", value_parser = values::millis, help_heading = heading::SERVER)]
    pub idle_timeout_ms: Option<u64>,
    /// How long receiving a whole request body may take (slower: 408; a bare number is
    /// milliseconds). Default 30000.
    #[arg(long, env = "GANTRY_BODY_READ_TIMEOUT_MS", value_parser = values::millis, help_heading = heading::SERVER)]
    pub body_read_timeout_ms: Option<u64>,
    /// How long answering a request may take once its body is in (later: 504,
    /// `GATEWAY_TIMEOUT`; a bare number is milliseconds). Default 30000.
    #[arg(long, env = "GANTRY_REQUEST_TIMEOUT_MS", value_parser = values::millis, help_heading = heading::SERVER)]
    pub request_timeout_ms: Option<u64>,
    /// Connections open at once; more wait in the listen backlog. Default 10000, and never
    /// more than three quarters of the open-file limit.
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", help_heading = heading::SERVER)]
    pub max_connections: Option<usize>,
    /// Bytes of request bodies held at once across all requests. Default 67108864 (64 MiB).
    #[arg(long, env = "GANTRY_BODY_BYTES_IN_FLIGHT", help_heading = heading::SERVER)]
    pub body_bytes_in_flight: Option<usize>,
    /// Serve `/metrics` on this address instead of the main listener (e.g. a port only
    /// the scraper reaches). Default: on the main listener.
    #[arg(long, env = "GANTRY_METRICS_LISTEN", help_heading = heading::SERVER)]
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain to serve over TLS (needs `--tls-key`): the API (or the
    /// subgraph) then answers HTTPS only, HTTP/2 or HTTP/1.1 as the client's ALPN asks.
    /// Default: plain HTTP.
    #[arg(long, env = "GANTRY_TLS_CERT", help_heading = heading::SERVER)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "GANTRY_TLS_KEY", help_heading = heading::SERVER)]
    pub tls_key: Option<PathBuf>,
    /// How long a client has to finish the TLS handshake (a bare number is milliseconds).
    /// Default 10000.
    #[arg(long, env = "GANTRY_TLS_HANDSHAKE_TIMEOUT_MS", value_parser = values::millis, help_heading = heading::SERVER)]
    pub tls_handshake_timeout_ms: Option<u64>,
    /// PEM file of CA certificates that `https://` subgraphs and JWKS may chain to,
    /// besides the public roots; a `rediss://` Redis must chain to one of them (for Redis
    /// the file replaces the public roots). Default: public roots only.
    #[arg(long, env = "GANTRY_TLS_CA_FILE", help_heading = heading::SERVER)]
    pub tls_ca_file: Option<PathBuf>,
    /// OTLP/HTTP collector to export traces to (its base URL, e.g. `http://otel:4318`;
    /// spans go to `/v1/traces`), when built with the `otel` feature. Default: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", help_heading = heading::SERVER)]
    pub otlp_endpoint: Option<String>,
    /// How long a process waits at start for the peers it needs: a gateway for its
    /// subgraphs to answer, the posts subgraph for the signing key the users subgraph
    /// generates into a shared data dir (a bare number is seconds; 0: no wait).
    #[arg(long, env = "GANTRY_STARTUP_WAIT_SECS", default_value = "60", value_parser = values::seconds, help_heading = heading::SERVER)]
    pub startup_wait_secs: u64,
    /// How long in-flight requests may run on after SIGTERM or Ctrl-C (a bare number is
    /// seconds).
    #[arg(long, env = "GANTRY_SHUTDOWN_GRACE_SECS", default_value_t = ServerLimits::default().shutdown_grace.as_secs(), value_parser = values::seconds, help_heading = heading::SERVER)]
    pub shutdown_grace_secs: u64,
}

impl Default for ServerArgs {
    fn default() -> Self {
        defaults()
    }
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:4000.
    #[arg(long, env = "GANTRY_LISTEN", help_heading = heading::SERVER)]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// A subgraph to compose, as NAME=URL; repeat for each.
    #[arg(long, value_name = "NAME=URL", required = true, help_heading = heading::COMPOSE)]
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
    #[arg(long, env = "GANTRY_LISTEN", help_heading = heading::SERVER)]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// The gateways' Redis. The posts subgraph uses it to drop cached responses about
    /// entities an account deletion changed (the gateways see no mutation for those), and,
    /// with `DATABASE_READ_URL`, to tell its other replicas who wrote lately (their reads
    /// stay on the primary); the users subgraph counts login attempts and registrations in
    /// it, for every replica.
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub events: EventArgs,
}

/// Which query answers the home feed (`--feed-read`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum FeedReadArg {
    /// Timelines merged with the most-followed authors' posts.
    #[default]
    Hybrid,
    /// `follows` and `posts` alone.
    FanoutOnRead,
}

/// How events between the subgraphs travel (`gantry subgraph`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum EventTransport {
    /// The posts subgraph reads the users subgraph's outbox table: both in one database.
    #[default]
    Database,
    /// Through Redis Streams (`REDIS_URL`): each subgraph may have a database of its own.
    Redis,
}

/// Events between subgraphs; defaults in [`gantry_kit::events::StreamSettings`].
#[derive(Debug, Args, Clone, Default)]
pub struct EventArgs {
    /// How events travel between the subgraphs: `database` (one shared database) or
    /// `redis` (Redis Streams, a database per subgraph). Give both subgraphs the same.
    #[arg(long, env = "GANTRY_EVENTS", value_enum, default_value_t, help_heading = heading::EVENTS)]
    pub events: EventTransport,
    /// Deliveries of an event the posts subgraph cannot read before it goes to the
    /// dead-letter stream. Default 5.
    #[arg(long, env = "GANTRY_EVENTS_MAX_DELIVERIES", help_heading = heading::EVENTS)]
    pub events_max_deliveries: Option<u32>,
    /// How long a delivered, unacknowledged event waits before it is delivered again (a
    /// bare number is milliseconds). Default 30000.
    #[arg(long, env = "GANTRY_EVENTS_CLAIM_IDLE_MS", value_parser = values::millis, help_heading = heading::EVENTS)]
    pub events_claim_idle_ms: Option<u64>,
    /// Entries the event stream keeps, roughly. Default 1000000.
    #[arg(long, env = "GANTRY_EVENTS_MAX_LEN", help_heading = heading::EVENTS)]
    pub events_max_len: Option<usize>,
    /// The users subgraph's GraphQL URL, for a posts subgraph with a database of its own:
    /// it follows revocations from that subgraph's `/revocations` (else from the
    /// `revocations` table of its own database).
    #[arg(long, env = "GANTRY_USERS_URL", help_heading = heading::EVENTS)]
    pub users_url: Option<String>,
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
    #[arg(long, default_value_t = 1, help_heading = heading::MIGRATE)]
    pub steps: u32,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only this subgraph's migrations (for a database of its own); default: every one.
    #[arg(long, value_enum, help_heading = heading::MIGRATE)]
    pub subgraph: Option<SubgraphName>,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The folder; every `.graphql` file in it and its subfolders is read.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many users to create.
    #[arg(long, default_value_t = 1000, help_heading = heading::SEED)]
    pub users: u32,
    /// How many posts each user writes on average (the distribution is skewed).
    #[arg(long, default_value_t = 10, help_heading = heading::SEED)]
    pub posts_per_user: u32,
    /// Seed of the random generator: the same seed creates the same data, and running it
    /// again adds nothing.
    #[arg(long, default_value_t = 1, help_heading = heading::SEED)]
    pub seed: u64,
    /// Password of every seeded user.
    #[arg(long, default_value = "seeded orbit lantern", help_heading = heading::SEED)]
    pub password: String,
    /// Hide the progress bar (for logs and CI).
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = heading::SEED)]
    pub quiet: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl CommonArgs {
    /// The settings of a command that only opens the database: its database flags, every
    /// other setting at its default.
    pub fn with_database(database: &DatabaseArgs) -> Self {
        Self {
            database: database.clone(),
            ..Self::default()
        }
    }
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

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let common = CommonArgs::default();
        assert_eq!(common.database.data_dir, PathBuf::from("./data"));
        assert_eq!(common.jwt_issuer, "gantry");
        assert_eq!(common.server.shutdown_grace_secs, 10);
        let gateway = GatewayOptions::default();
        assert!(gateway.playground);
        assert_eq!(gateway.redis.redis_prefix, "gantry:");
    }
}
