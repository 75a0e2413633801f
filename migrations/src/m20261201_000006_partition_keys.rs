//! Primary keys that hold the distribution column each table gets at phase 4 (the
//! partitioning plan in `bench/README.md`): a distributed PostgreSQL enforces a unique
//! constraint only within one shard, so it must include the column rows are placed by.
//! `comments (id)` becomes `(post_id, id)` and `follows (id)` becomes `(follower_id, id)`;
//! each replaces the `(post_id, id)` / `(follower_id, id)` index it duplicates, and a plain
//! index on `id` keeps look-ups by id alone (ids stay unique: UUIDv7s made by the service).
//!
//! PostgreSQL only. SQLite cannot change a primary key without copying the table into a
//! new one, and a SQLite database is the one-process shape that is never distributed: its
//! keys stay as they were, which no query depends on.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE comments DROP CONSTRAINT comments_pkey",
    "ALTER TABLE comments ADD CONSTRAINT comments_pkey PRIMARY KEY (post_id, id)",
    "DROP INDEX ix_comments_post_id",
    "CREATE INDEX ix_comments_id ON comments (id)",
    "ALTER TABLE follows DROP CONSTRAINT follows_pkey",
    "ALTER TABLE follows ADD CONSTRAINT follows_pkey PRIMARY KEY (follower_id, id)",
    "DROP INDEX ix_follows_follower_id",
    "CREATE INDEX ix_follows_id ON follows (id)",
];

const DOWN: &[&str] = &[
    "DROP INDEX ix_follows_id",
    "CREATE INDEX ix_follows_follower_id ON follows (follower_id, id)",
    "ALTER TABLE follows DROP CONSTRAINT follows_pkey",
    "ALTER TABLE follows ADD CONSTRAINT follows_pkey PRIMARY KEY (id)",
    "DROP INDEX ix_comments_id",
    "CREATE INDEX ix_comments_post_id ON comments (post_id, id)",
    "ALTER TABLE comments DROP CONSTRAINT comments_pkey",
    "ALTER TABLE comments ADD CONSTRAINT comments_pkey PRIMARY KEY (id)",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}
