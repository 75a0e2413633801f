//! `gantry migrate [up|down|status]`. `up` and `down` take the same lock as a server's start,
//! so they may run while servers start; `status` only reads, and creates nothing (no SQLite
//! file, no migrations table) where there is no database yet.

use gantry_kit::db::describe;
use gantry_migrations::{Migrator, MigratorTrait, Scope};

use crate::cli::{CommonArgs, MigrateAction, MigrateArgs, SubgraphName};

/// Closes the pool before the process ends, so SQLite checkpoints its journal into the file
/// and removes it: a SQLite file handed on (to a read-only reader, a copy) is then whole.
async fn close(db: sea_orm::DatabaseConnection) {
    if let Err(err) = db.close().await {
        tracing::warn!(error = %describe(&err), "closing the database");
    }
}

pub async fn run(common: &CommonArgs, args: MigrateArgs) -> anyhow::Result<()> {
    let settings = common.database();
    let scope = match args.subgraph {
        None => Scope::All,
        Some(SubgraphName::Users) => Scope::Users,
        Some(SubgraphName::Posts) => Scope::Posts,
    };
    let fail = |what: &str, err: sea_orm::DbErr| anyhow::anyhow!("{what}: {}", describe(&err));
    match args.action {
        MigrateAction::Up => {
            let db = gantry_kit::db::connect(&settings).await?;
            let applied = gantry_migrations::apply_pending_in(&db, scope)
                .await
                .map_err(|err| fail("applying migrations", err))?;
            println!("applied {} migration(s)", applied.len());
            close(db).await;
        }
        MigrateAction::Down => {
            let db = gantry_kit::db::connect(&settings).await?;
            let rolled_back = gantry_migrations::roll_back(&db, args.steps)
                .await
                .map_err(|err| fail("rolling back migrations", err))?;
            println!("rolled back {} migration(s)", rolled_back.len());
            close(db).await;
        }
        MigrateAction::Status => {
            if let Some(file) = settings.sqlite_file()
                && !file.exists()
            {
                println!("no database at {} yet", file.display());
                for migration in scope.migrations() {
                    println!("{:<8} {}", "Pending", migration.name());
                }
                return Ok(());
            }
            let db = gantry_kit::db::connect(&settings.read_only()).await?;
            let migrations = Migrator::get_migration_with_status_read_only(&db)
                .await
                .map_err(|err| fail("reading migration status", err))?;
            for migration in migrations.iter().filter(|m| scope.owns(m.name())) {
                println!("{:<8} {}", migration.status().to_string(), migration.name());
            }
            close(db).await;
        }
    }
    Ok(())
}
