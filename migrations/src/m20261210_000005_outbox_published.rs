//! The users subgraph's `outbox_events.published_at`: when the relay handed the event to
//! Redis Streams (null until then, and for good where events stay in the database). The
//! relay reads the unpublished ones in id order through a partial index, so an event that
//! commits after a later one is still found.
//!
//! Events written before this migration are unpublished: a relay started afterwards sends
//! them once, which their consumers take as repeats (they are idempotent).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    PublishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEvents::Table)
                    .add_column(
                        ColumnDef::new(OutboxEvents::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Partial indexes are written the same way in PostgreSQL and SQLite.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_outbox_events_unpublished ON outbox_events (id) \
                 WHERE published_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_events_unpublished")
                    .table(OutboxEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEvents::Table)
                    .drop_column(OutboxEvents::PublishedAt)
                    .to_owned(),
            )
            .await
    }
}
