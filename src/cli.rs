//! The command line. Every setting can also come from the environment variable named in
//! its help; the defaults are the embedded, single-process ones.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: migrations, the subgraphs and the gateway (the default).
    Serve(ServeArgs),
    /// Serve one subgraph on its own.
    Subgraph(SubgraphArgs),
    /// Apply, roll back or list database migrations.
    Migrate(MigrateArgs),
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
    /// Trust `X-Forwarded-For` for the client address (only behind your own proxy).
    #[arg(
        long,
        env = "GANTRY_TRUST_FORWARDED_FOR",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_for: bool,
    /// Failed logins on one account before back-off starts.
    #[arg(
        long,
        env = "GANTRY_LOGIN_ACCOUNT_THRESHOLD",
        default_value_t = 5,
        global = true
    )]
    pub login_account_threshold: u32,
    /// Failed logins from one client address before back-off starts.
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
    /// Seconds in-flight requests may run on after SIGTERM or Ctrl-C.
    #[arg(
        long,
        env = "GANTRY_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on. Default 127.0.0.1:4000.
    #[arg(long, env = "GANTRY_LISTEN")]
    pub listen: Option<SocketAddr>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
