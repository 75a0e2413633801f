//! One module per command; each builds its app from the settings and serves it. The
//! `build_*` functions are public so tests can run the real wiring on port 0.

pub mod compose;
pub mod composition;
pub mod events;
pub mod gateway;
pub mod manifest;
pub mod migrate;
pub mod readiness;
pub mod schema;
pub mod seed;
pub mod serve;
pub mod subgraph;

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::cli::{Cli, Command, CommonArgs, ServeArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve::run(&cli.common, args).await,
        Command::Gateway(args) => gateway::run(&cli.common, args).await,
        Command::Subgraph(args) => subgraph::run(&cli.common, args).await,
        Command::Compose(args) => compose::run(args).await,
        Command::Schema => schema::run(&cli.common).await,
        Command::Migrate(args) => migrate::run(&cli.common, args).await,
        Command::Seed(args) => seed::run(&cli.common, args).await,
        Command::Manifest(args) => manifest::run(&args),
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

/// Tasks that run beside a server (outbox consumers). They stop when asked, or when this
/// value is dropped.
#[derive(Debug)]
pub struct BackgroundTasks {
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self {
            stop: tokio::sync::watch::channel(false).0,
            handles: Vec::new(),
        }
    }
}

impl BackgroundTasks {
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.handles.push(tokio::spawn(task(self.stop.subscribe())));
    }

    /// Asks every task to stop and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for handle in self.handles.drain(..) {
            let _ = handle.await;
        }
    }
}

/// Where `/metrics` goes: into `router`, or, with `--metrics-listen`, apart (the second
/// router, for [`serve_metrics`]).
pub fn place_metrics(
    common: &CommonArgs,
    router: axum::Router,
    metrics: axum::Router,
) -> (axum::Router, Option<axum::Router>) {
    match common.server.metrics_listen {
        Some(_) => (router, Some(metrics)),
        None => (router.merge(metrics), None),
    }
}

/// Serves `/metrics` on `--metrics-listen` beside the server, until the tasks stop.
pub async fn serve_metrics(
    common: &CommonArgs,
    metrics: Option<axum::Router>,
    tasks: &mut BackgroundTasks,
) -> anyhow::Result<()> {
    let (Some(listen), Some(metrics)) = (common.server.metrics_listen, metrics) else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener {listen}"))?;
    let metrics_address = listener.local_addr()?;
    tracing::info!(%metrics_address, "metrics at http://{metrics_address}/metrics");
    tasks.spawn(move |mut stop| async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(err) = axum::serve(listener, metrics)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %err, "the metrics listener failed");
        }
    });
    Ok(())
}

/// The shared Redis at `url`, when one is configured. Redis need not answer yet: the
/// connection is made (and remade) in the background, and until then the shared caches
/// are bypassed. Only a URL that is not a Redis URL stops the start.
pub fn shared_redis(
    url: Option<&str>,
    key_prefix: &str,
    timeout_ms: u64,
) -> anyhow::Result<Option<gantry_gateway::shared::SharedState>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let settings = gantry_gateway::shared::RedisSettings {
        url: url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
    };
    let shared = gantry_gateway::shared::SharedState::new(settings).map_err(|err| {
        anyhow::anyhow!(
            "REDIS_URL `{}` is not usable: {err}",
            gantry_kit::db::redact(url)
        )
    })?;
    Ok(Some(shared))
}
