//! The home feed's fanned-out timelines: `timelines` (viewer, post, author), capped per
//! viewer; `timeline_heads` (per viewer: entries written since the last trim, and the
//! horizon the timeline is complete from); `feed_pulled_authors` (the most-followed
//! authors, read at feed time instead of fanned out). Filled from the follows and posts
//! already there, so a database migrated with data serves the same feed as before.
//!
//! Every unique key leads with the column the table is distributed on at phase 4
//! (`viewer_id`, `author_id`): see the partitioning plan in `bench/README.md`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Timelines {
    Table,
    ViewerId,
    PostId,
    AuthorId,
}

#[derive(DeriveIden)]
enum TimelineHeads {
    Table,
    ViewerId,
    Entries,
    Horizon,
}

#[derive(DeriveIden)]
enum FeedPulledAuthors {
    Table,
    AuthorId,
}

/// The follower count above which this migration marks an author as read at feed time,
/// and how many entries it keeps per viewer: the defaults of the feed settings when it
/// was written. Other values later are fine: the marks and horizons it stores say what
/// the timelines hold.
const FILL_MAX_FOLLOWERS: u64 = 1000;
const FILL_CAP: u64 = 800;

/// Empties the timelines and fills them again from `follows` and `posts`, in the
/// caller's transaction: authors followed by more than `max_followers` accounts are
/// marked as read at feed time; every other followed author's posts go to each
/// follower's timeline, the newest `cap` per viewer, and a viewer who had more gets the
/// oldest one kept as horizon. For this migration and after bulk loads (`gantry seed`),
/// which write follows and posts without fanning them out.
pub async fn rebuild_timelines<C: ConnectionTrait>(
    db: &C,
    max_followers: u64,
    cap: u64,
) -> Result<(), DbErr> {
    let cap = Ord::max(cap, 1);
    for statement in [
        "DELETE FROM timelines".to_owned(),
        "DELETE FROM timeline_heads".to_owned(),
        "DELETE FROM feed_pulled_authors".to_owned(),
        format!(
            "INSERT INTO feed_pulled_authors (author_id) \
             SELECT followee_id FROM follows GROUP BY followee_id HAVING COUNT(*) > {max_followers}"
        ),
        format!(
            "INSERT INTO timelines (viewer_id, post_id, author_id) \
             SELECT viewer_id, post_id, author_id FROM ( \
               SELECT f.follower_id AS viewer_id, p.id AS post_id, p.author_id AS author_id, \
                      ROW_NUMBER() OVER (PARTITION BY f.follower_id ORDER BY p.id DESC) AS rn \
               FROM follows f JOIN posts p ON p.author_id = f.followee_id \
               WHERE NOT EXISTS (SELECT 1 FROM feed_pulled_authors a WHERE a.author_id = f.followee_id) \
             ) ranked WHERE rn <= {cap}"
        ),
        "INSERT INTO timeline_heads (viewer_id, entries) \
         SELECT viewer_id, COUNT(*) FROM timelines GROUP BY viewer_id"
            .to_owned(),
        format!(
            "UPDATE timeline_heads SET horizon = ( \
               SELECT t.post_id FROM timelines t WHERE t.viewer_id = timeline_heads.viewer_id \
               ORDER BY t.post_id ASC LIMIT 1) \
             WHERE entries >= {cap}"
        ),
    ] {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Timelines::Table)
                    .col(ColumnDef::new(Timelines::ViewerId).uuid().not_null())
                    .col(ColumnDef::new(Timelines::PostId).uuid().not_null())
                    .col(ColumnDef::new(Timelines::AuthorId).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .col(Timelines::ViewerId)
                            .col(Timelines::PostId),
                    )
                    .to_owned(),
            )
            .await?;
        // A deleted post leaves every timeline it was fanned out to.
        manager
            .create_index(
                Index::create()
                    .name("ix_timelines_post_id")
                    .table(Timelines::Table)
                    .col(Timelines::PostId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TimelineHeads::Table)
                    .col(
                        ColumnDef::new(TimelineHeads::ViewerId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TimelineHeads::Entries)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(TimelineHeads::Horizon).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FeedPulledAuthors::Table)
                    .col(
                        ColumnDef::new(FeedPulledAuthors::AuthorId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await?;
        rebuild_timelines(manager.get_connection(), FILL_MAX_FOLLOWERS, FILL_CAP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            FeedPulledAuthors::Table.into_iden(),
            TimelineHeads::Table.into_iden(),
            Timelines::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
