//! The posts subgraph's tables: posts, comments, likes, follows, and outbox offsets.
//! There are no foreign keys to `users`: each subgraph owns its own tables, and account
//! deletion reaches this side as an outbox event.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Posts {
    Table,
    Id,
    AuthorId,
    Body,
    CreatedAt,
    EditedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    PostId,
    AuthorId,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Likes {
    Table,
    PostId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Follows {
    Table,
    Id,
    FollowerId,
    FolloweeId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OutboxOffsets {
    Table,
    Consumer,
    LastEventId,
    UpdatedAt,
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(Alias::new(*col));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .col(ColumnDef::new(Posts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Posts::AuthorId).uuid().not_null())
                    .col(ColumnDef::new(Posts::Body).text().not_null())
                    .col(
                        ColumnDef::new(Posts::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Posts::EditedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // A user's posts, newest first; and the feed (posts of followed authors by time).
        manager
            .create_index(index(
                "ix_posts_author_id",
                Posts::Table,
                &["author_id", "id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .col(ColumnDef::new(Comments::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Comments::PostId).uuid().not_null())
                    .col(ColumnDef::new(Comments::AuthorId).uuid().not_null())
                    .col(ColumnDef::new(Comments::Body).text().not_null())
                    .col(
                        ColumnDef::new(Comments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_comments_post")
                            .from(Comments::Table, Comments::PostId)
                            .to(Posts::Table, Posts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A post's comments by time (and their count); a user's comments, for deletion.
        manager
            .create_index(index(
                "ix_comments_post_id",
                Comments::Table,
                &["post_id", "id"],
            ))
            .await?;
        manager
            .create_index(index("ix_comments_author", Comments::Table, &["author_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Likes::Table)
                    .col(ColumnDef::new(Likes::PostId).uuid().not_null())
                    .col(ColumnDef::new(Likes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(Likes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(Likes::PostId).col(Likes::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_likes_post")
                            .from(Likes::Table, Likes::PostId)
                            .to(Posts::Table, Posts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Likes by post come from the primary key; likes by user need their own index.
        manager
            .create_index(index(
                "ix_likes_user_post",
                Likes::Table,
                &["user_id", "post_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Follows::Table)
                    .col(ColumnDef::new(Follows::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Follows::FollowerId).uuid().not_null())
                    .col(ColumnDef::new(Follows::FolloweeId).uuid().not_null())
                    .col(
                        ColumnDef::new(Follows::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // One follow per pair; who someone follows (by time) and who follows them.
        manager
            .create_index(
                index(
                    "ux_follows_pair",
                    Follows::Table,
                    &["follower_id", "followee_id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_follows_follower_id",
                Follows::Table,
                &["follower_id", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_follows_followee_id",
                Follows::Table,
                &["followee_id", "id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxOffsets::Table)
                    .col(
                        ColumnDef::new(OutboxOffsets::Consumer)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OutboxOffsets::LastEventId).uuid().not_null())
                    .col(
                        ColumnDef::new(OutboxOffsets::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OutboxOffsets::Table.into_iden(),
            Follows::Table.into_iden(),
            Likes::Table.into_iden(),
            Comments::Table.into_iden(),
            Posts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
