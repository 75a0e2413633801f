//! One module per command. The server commands (`serve`, `gateway`, `subgraph`) map their
//! arguments to the libraries' settings, build an [`App`] and hand it to [`run_server`];
//! their `build` functions are public so tests can run the real wiring on port 0.

pub mod compose;
pub mod events;
pub mod gateway;
pub mod live;
pub mod manifest;
pub mod migrate;
pub mod schema;
pub mod seed;
pub mod serve;
pub mod subgraph;

use std::net::SocketAddr;

use anyhow::Context;
pub use gantry_kit::server::{App, BackgroundTasks};
use sea_orm::DatabaseConnection;

use crate::cli::{Cli, Command, CommonArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&args.common.clone(), args).await,
        Command::Gateway(args) => gateway::run(&args.common.clone(), args).await,
        Command::Subgraph(args) => subgraph::run(&args.common.clone(), args).await,
        Command::Compose(args) => compose::run(args).await,
        Command::Schema => schema::run(&CommonArgs::default()).await,
        Command::Migrate(args) => {
            migrate::run(&CommonArgs::with_database(&args.database), args).await
        }
        Command::Seed(args) => seed::run(&CommonArgs::with_database(&args.database), args).await,
        Command::Manifest(args) => manifest::run(&args),
        Command::Config => Ok(crate::cli::print::run(cli.config.as_deref())?),
    }
}

/// Connects and applies pending migrations, as every server command does at start. Any
/// number of processes may do this at once on one database: the migrations run under a
/// lock (see [`gantry_migrations::lock`]).
pub async fn open_database(common: &CommonArgs) -> anyhow::Result<DatabaseConnection> {
    open_database_in(common, gantry_migrations::Scope::All).await
}

/// [`open_database`], applying only the migrations of `scope` (a subgraph's own).
pub async fn open_database_in(
    common: &CommonArgs,
    scope: gantry_migrations::Scope,
) -> anyhow::Result<DatabaseConnection> {
    let settings = common.database();
    let db = gantry_kit::db::connect(&settings).await?;
    let applied = gantry_migrations::apply_pending_in(&db, scope)
        .await
        .map_err(|err| {
            anyhow::anyhow!("applying migrations: {}", gantry_kit::db::describe(&err))
        })?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied pending migrations");
    }
    tracing::info!(database = %gantry_kit::db::redact(&settings.url), "database ready");
    Ok(db)
}

/// Where reads go: with `DATABASE_READ_URL`, a replica pool beside `primary`, measured in
/// the background by a task added to `tasks`; else the primary alone. A replica that does
/// not answer at start does not stop it. `shared` spreads read-your-writes marks to the
/// other processes.
pub async fn read_routing(
    common: &CommonArgs,
    primary: DatabaseConnection,
    shared: Option<gantry_kit::shared::SharedState>,
    tasks: &mut BackgroundTasks,
) -> anyhow::Result<gantry_kit::reads::ReadRouting> {
    use gantry_kit::reads::ReadRouting;
    let Some(settings) = common.read_replica() else {
        return Ok(ReadRouting::primary_only(primary));
    };
    if settings.is_sqlite() {
        anyhow::bail!("DATABASE_READ_URL must be a PostgreSQL replica (postgres://…)");
    }
    let replica = gantry_kit::db::connect_replica(&settings).await?;
    tracing::info!(replica = %gantry_kit::db::redact(&settings.url), "public reads go to the read replica");
    let routing = ReadRouting::new(primary, Some(replica), common.reads(), shared);
    let watched = routing.clone();
    tasks.spawn(move |stop| watched.watch_replica(stop));
    Ok(routing)
}

/// Serves `app` on `listen` until Ctrl-C or SIGTERM, then finishes in-flight requests and
/// stops its tasks: the one run of every server command. Over TLS when `--tls-cert` and
/// `--tls-key` are set. `listening` is told the address and the URL scheme.
pub async fn run_server(
    common: &CommonArgs,
    mut app: App,
    listen: SocketAddr,
    listening: impl FnOnce(SocketAddr, &'static str),
) -> anyhow::Result<()> {
    app.tls = common.server_tls()?;
    let scheme = if app.tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    listening(listener.local_addr()?, scheme);
    app.run(listener, gantry_kit::server::shutdown_signal())
        .await?;
    Ok(())
}

/// The shared Redis at `url`, when one is configured; a `rediss://` one must chain to the
/// CA of `--tls-ca-file` when that is set. Redis need not answer yet: the
/// connection is made (and remade) in the background, and until then the shared caches
/// are bypassed. Only a URL that is not a Redis URL stops the start.
pub fn shared_redis(
    common: &CommonArgs,
    url: Option<&str>,
    key_prefix: &str,
    timeout_ms: u64,
) -> anyhow::Result<Option<gantry_kit::shared::SharedState>> {
    let Some(settings) = redis_settings(common, url, key_prefix, timeout_ms)? else {
        return Ok(None);
    };
    let shared = gantry_kit::shared::SharedState::new(settings.clone()).map_err(|err| {
        anyhow::anyhow!(
            "REDIS_URL `{}` is not usable: {err}",
            gantry_kit::url::redact(&settings.url)
        )
    })?;
    Ok(Some(shared))
}

/// The Redis settings of `REDIS_URL`, when one is configured; a `rediss://` one trusts the
/// CA of `--tls-ca-file` when that is set.
pub fn redis_settings(
    common: &CommonArgs,
    url: Option<&str>,
    key_prefix: &str,
    timeout_ms: u64,
) -> anyhow::Result<Option<gantry_kit::shared::RedisSettings>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let root_certificates = match &common.server.tls_ca_file {
        Some(path) if url.starts_with("rediss://") => Some(
            std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?,
        ),
        _ => None,
    };
    Ok(Some(gantry_kit::shared::RedisSettings {
        url: url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
        root_certificates,
    }))
}
