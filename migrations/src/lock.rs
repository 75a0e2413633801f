//! Applying and rolling back migrations while other processes may be doing the same.
//!
//! Every server command applies pending migrations at start, and operators start the
//! subgraphs and a migration job together. Two processes migrating one fresh PostgreSQL
//! database at once collide in the catalog (`CREATE TABLE IF NOT EXISTS` is not safe
//! against itself: `pg_type_typname_nsp_index`), so each run holds a lock for its whole
//! transaction: a PostgreSQL transaction-level advisory lock, or SQLite's write lock
//! (`BEGIN IMMEDIATE`). The second process waits, then finds nothing pending.

use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use sea_orm_migration::sea_orm::{EntityTrait, Set};
use sea_orm_migration::{SchemaManager, seaql_migrations};

use crate::{Migrator, Scope};

/// The advisory lock every Gantry process takes to migrate a PostgreSQL database
/// (`gantry` in ASCII, then 1): one value, so any two of them exclude each other.
pub const ADVISORY_LOCK_KEY: i64 = 0x0067_616e_7472_7901;

/// Applies every pending migration under the lock and returns the names it applied. A
/// database with nothing pending is not locked at all (read without creating anything).
pub async fn apply_pending(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    if Migrator::get_pending_migrations_read_only(db)
        .await?
        .is_empty()
    {
        return Ok(Vec::new());
    }
    let txn = locked(db).await?;
    let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(pending)
}

/// Applies every pending migration of `scope` under the lock and returns the names it
/// applied. Records go to the one `seaql_migrations` table whatever the scope, so the
/// history of a database both subgraphs share stays whole; migrations of other scopes
/// recorded there are left alone.
pub async fn apply_pending_in(db: &DatabaseConnection, scope: Scope) -> Result<Vec<String>, DbErr> {
    if scope == Scope::All {
        return apply_pending(db).await;
    }
    let pending_in = |status: Vec<sea_orm_migration::Migration>| -> Vec<String> {
        status
            .into_iter()
            .filter(|m| m.status() == sea_orm_migration::MigrationStatus::Pending)
            .map(|m| m.name().to_owned())
            .filter(|name| scope.owns(name))
            .collect()
    };
    if pending_in(Migrator::get_migration_with_status_read_only(db).await?).is_empty() {
        return Ok(Vec::new());
    }
    let txn = locked(db).await?;
    let pending = pending_in(Migrator::get_migration_with_status(&txn).await?);
    let manager = SchemaManager::new(&txn);
    for migration in scope.migrations() {
        if !pending.iter().any(|name| name == migration.name()) {
            continue;
        }
        migration.up(&manager).await?;
        seaql_migrations::Entity::insert(seaql_migrations::ActiveModel {
            version: Set(migration.name().to_owned()),
            applied_at: Set(unix_now()),
        })
        .exec(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(pending)
}

/// Unix seconds now, as sea-orm-migration records them.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// Rolls back the last `steps` applied migrations under the lock; returns their names.
pub async fn roll_back(db: &DatabaseConnection, steps: u32) -> Result<Vec<String>, DbErr> {
    let txn = locked(db).await?;
    let applied = Migrator::get_applied_migrations(&txn).await?;
    let names: Vec<String> = applied
        .iter()
        .rev()
        .take(steps as usize)
        .map(|m| m.name().to_owned())
        .collect();
    Migrator::down(&txn, Some(names.len() as u32)).await?;
    txn.commit().await?;
    Ok(names)
}

/// A transaction that holds the migration lock until it ends.
async fn locked(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            let sql = |text: String| Statement::from_string(DbBackend::Postgres, text);
            let got = txn
                .query_one_raw(sql(format!(
                    "SELECT pg_try_advisory_xact_lock({ADVISORY_LOCK_KEY}) AS got"
                )))
                .await?
                .map(|row| row.try_get::<bool>("", "got"))
                .transpose()?
                .unwrap_or(false);
            if !got {
                tracing::info!("another process is applying migrations; waiting for it");
                txn.execute_raw(sql(format!(
                    "SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
                )))
                .await?;
            }
            Ok(txn)
        }
        _ => {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
        }
    }
}
