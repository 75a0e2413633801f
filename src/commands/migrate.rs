//! `gantry migrate [up|down|status]`.

use anyhow::Context;
use gantry_migrations::{Migrator, MigratorTrait};

use crate::cli::{CommonArgs, MigrateAction, MigrateArgs};

pub async fn run(common: &CommonArgs, args: MigrateArgs) -> anyhow::Result<()> {
    let db = gantry_kit::db::connect(&common.database()).await?;
    match args.action {
        MigrateAction::Up => {
            let pending = Migrator::get_pending_migrations(&db).await?;
            Migrator::up(&db, None)
                .await
                .context("applying migrations")?;
            println!("applied {} migration(s)", pending.len());
        }
        MigrateAction::Down => {
            let applied = Migrator::get_applied_migrations(&db).await?;
            let steps = args.steps.min(applied.len() as u32);
            Migrator::down(&db, Some(steps))
                .await
                .context("rolling back migrations")?;
            println!("rolled back {steps} migration(s)");
        }
        MigrateAction::Status => {
            for migration in Migrator::get_migration_with_status(&db).await? {
                println!("{:<8} {}", migration.status().to_string(), migration.name());
            }
        }
    }
    Ok(())
}
