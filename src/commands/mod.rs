//! One module per command; each builds its app from the settings and serves it. The
//! `build_*` functions are public so tests can run the real wiring on port 0.

pub mod compose;
pub mod gateway;
pub mod manifest;
pub mod migrate;
pub mod schema;
pub mod seed;
pub mod serve;
pub mod subgraph;

use anyhow::Context;
use gantry_migrations::{Migrator, MigratorTrait};
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

/// Connects and applies pending migrations, as every server command does at start.
pub async fn open_database(common: &CommonArgs) -> anyhow::Result<DatabaseConnection> {
    let settings = common.database();
    let db = gantry_kit::db::connect(&settings).await?;
    let pending = Migrator::get_pending_migrations(&db)
        .await
        .context("reading migration status")?;
    if !pending.is_empty() {
        tracing::info!(count = pending.len(), "applying pending migrations");
        Migrator::up(&db, None)
            .await
            .context("applying migrations")?;
    }
    tracing::info!(database = %gantry_kit::db::redact(&settings.url), "database ready");
    Ok(db)
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

/// Connects to Redis at `url` with these settings; when it cannot be reached, logs
/// `unreachable` (what the process does without it) and returns `None`.
pub async fn connect_redis(
    url: Option<&str>,
    key_prefix: &str,
    timeout_ms: u64,
    unreachable: &str,
) -> Option<gantry_gateway::shared::SharedState> {
    let settings = gantry_gateway::shared::RedisSettings {
        url: url?.to_owned(),
        key_prefix: key_prefix.to_owned(),
        timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
    };
    match gantry_gateway::shared::SharedState::connect(settings).await {
        Ok(shared) => Some(shared),
        Err(err) => {
            tracing::error!(error = %err, "Redis is unreachable; {unreachable}");
            None
        }
    }
}
