//! The posts subgraph's `known_accounts`: which accounts exist, and tombstones of
//! deleted ones.
//!
//! It starts with every account already in `users` when that table is in the same
//! database, as it is in every shape Gantry runs (the posts subgraph reads the users
//! subgraph's outbox from it). A posts database of its own must get that copy once from
//! the users database (`SELECT id FROM users`) before it serves; later accounts arrive as
//! account-created events.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KnownAccounts {
    Table,
    UserId,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KnownAccounts::Table)
                    .col(
                        ColumnDef::new(KnownAccounts::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(KnownAccounts::DeletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        if manager.has_table("users").await? {
            manager
                .get_connection()
                .execute_unprepared("INSERT INTO known_accounts (user_id) SELECT id FROM users")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KnownAccounts::Table).to_owned())
            .await
    }
}
