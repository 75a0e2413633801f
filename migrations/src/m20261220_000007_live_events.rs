//! The live-event tables the subscriptions are fed from: `post_live_events` (the posts
//! subgraph's: posts created, comments added, like counts changed) and
//! `user_live_events` (the users subgraph's: profiles updated). A write records its event
//! in its own transaction; the relay publishes committed ones and stamps `published_at`
//! (found through a partial index on the unpublished), and deletes them after a while.
//!
//! Two migrations, one per subgraph, over one table shape, so each may have a database of
//! its own.

use sea_orm_migration::prelude::*;

/// Creates one live-event table and its index of unpublished events.
async fn create(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Alias::new(table))
                .col(
                    ColumnDef::new(Alias::new("id"))
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Alias::new("topic")).string().not_null())
                .col(ColumnDef::new(Alias::new("payload")).text().not_null())
                .col(
                    ColumnDef::new(Alias::new("created_at"))
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Alias::new("published_at"))
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
    // Partial indexes are written the same way in PostgreSQL and SQLite.
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "CREATE INDEX ix_{table}_unpublished ON {table} (id) WHERE published_at IS NULL"
        ))
        .await?;
    Ok(())
}

async fn drop(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(Alias::new(table)).to_owned())
        .await
}

/// The posts subgraph's `post_live_events`.
pub mod posts {
    use super::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261220_000007_post_live_events"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            create(manager, "post_live_events").await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            drop(manager, "post_live_events").await
        }
    }
}

/// The users subgraph's `user_live_events`.
pub mod users {
    use super::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261220_000008_user_live_events"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            create(manager, "user_live_events").await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            drop(manager, "user_live_events").await
        }
    }
}
