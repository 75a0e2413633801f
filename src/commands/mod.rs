//! One module per command; each builds its app from the settings and serves it. The
//! `build_*` functions are public so tests can run the real wiring on port 0.

pub mod migrate;
pub mod serve;
pub mod subgraph;

use anyhow::Context;
use gantry_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

use crate::cli::{Cli, Command, CommonArgs, ServeArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve::run(&cli.common, args).await,
        Command::Subgraph(args) => subgraph::run(&cli.common, args).await,
        Command::Migrate(args) => migrate::run(&cli.common, args).await,
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
