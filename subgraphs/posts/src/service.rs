//! The posts service: every write, and the top-level lists (feed, latest posts). Per-parent
//! reads go through [`crate::loaders`] instead. Writes that subscribers see live (a post
//! created, a comment added, a like count changed) record their event in their own
//! transaction ([`crate::live`]) and ring the relay's bell once committed.

use chrono::Utc;
use gantry_entities::{comment, follow, like, post};
use gantry_kit::db::begin_write;
use gantry_kit::error::ApiResult;
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::reads::{ReadFrom, ReadRouting};
use gantry_kit::{ApiError, Viewer};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::accounts;
use crate::domain::{CommentBody, PostBody};
use crate::live;
use crate::loaders::POSTS_BY;
use crate::pages::{Direction, Page, merged_page_lateral, page};
use crate::timelines::{self, FeedRead, FeedSettings};

/// Up to this many followees a PostgreSQL feed merges per-author pages; past it, it walks
/// all posts newest first. On 10,000 users and 100,000 posts (`gantry seed`) the merge
/// took 0.5 ms at 11 followees where the walk took 4.3 ms, they crossed between 50 and
/// 121, and at 190 the walk took 0.5 ms and the merge 1.8 ms.
pub const FEED_MERGE_MAX_FOLLOWEES: u64 = 64;

#[derive(Debug, Clone)]
pub struct PostsService {
    /// The primary: writes, and the reads they make.
    db: DatabaseConnection,
    reads: ReadRouting,
    feed: FeedSettings,
    /// Rung after a write with a live event commits.
    live: OutboxSignal,
}

impl PostsService {
    /// Every read from `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_reads(ReadRouting::primary_only(db))
    }

    /// Reads routed by `reads` (writes always go to its primary).
    pub fn with_reads(reads: ReadRouting) -> Self {
        Self {
            db: reads.primary().clone(),
            reads,
            feed: FeedSettings::default(),
            live: OutboxSignal::default(),
        }
    }

    /// The bell the live-event relay waits on.
    pub fn with_live_signal(mut self, signal: OutboxSignal) -> Self {
        self.live = signal;
        self
    }

    /// How the feed splits between fan-out on write and on read.
    pub fn with_feed(mut self, feed: FeedSettings) -> Self {
        self.feed = feed;
        self
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn reads(&self) -> &ReadRouting {
        &self.reads
    }

    /// Everyone's posts, newest first.
    #[tracing::instrument(skip(self))]
    pub async fn latest(
        &self,
        from: ReadFrom,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        match self
            .latest_on(self.reads.connection(from), first, after)
            .await
        {
            Err(_) if from == ReadFrom::Replica => {
                self.reads.replica_read_failed();
                self.latest_on(&self.db, first, after).await
            }
            done => done,
        }
    }

    async fn latest_on(
        &self,
        db: &DatabaseConnection,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        page(
            db,
            post::Entity::find(),
            post::Column::Id,
            Direction::NewestFirst,
            first,
            after,
        )
        .await
    }

    /// The viewer's own posts and those of everyone they follow, newest first: their
    /// timeline merged with the posts read at feed time (see [`crate::timelines`]), or,
    /// for a page older than the timeline holds, [`Self::feed_fanout_on_read`].
    #[tracing::instrument(skip(self))]
    pub async fn feed(
        &self,
        from: ReadFrom,
        viewer: Viewer,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        match self
            .feed_on(self.reads.connection(from), viewer, first, after)
            .await
        {
            Err(_) if from == ReadFrom::Replica => {
                self.reads.replica_read_failed();
                self.feed_on(&self.db, viewer, first, after).await
            }
            done => done,
        }
    }

    async fn feed_on(
        &self,
        db: &DatabaseConnection,
        viewer: Viewer,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        if self.feed.read == FeedRead::FanoutOnRead {
            return self.fanout_on_read_on(db, viewer, first, after).await;
        }
        match timelines::feed_page(db, viewer.user_id, first, after).await? {
            Some(page) => Ok(page),
            None => self.fanout_on_read_on(db, viewer, first, after).await,
        }
    }

    /// The feed read from `follows` and `posts` alone (fan-out on read), from the
    /// primary: what the hybrid feed must equal, and what answers pages older than a
    /// viewer's timeline holds.
    ///
    /// On PostgreSQL a viewer who follows few accounts gets their authors' latest posts
    /// merged ([`merged_page_lateral`]): walking all posts newest first and keeping the
    /// followed authors' would read far back when those authors post rarely. Past
    /// [`FEED_MERGE_MAX_FOLLOWEES`] that walk is the cheaper one, since it soon finds a
    /// page, and it is what SQLite (no `LATERAL`) always does.
    pub async fn feed_fanout_on_read(
        &self,
        viewer: Viewer,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        self.fanout_on_read_on(&self.db, viewer, first, after).await
    }

    async fn fanout_on_read_on(
        &self,
        db: &DatabaseConnection,
        viewer: Viewer,
        first: u64,
        after: Option<Uuid>,
    ) -> ApiResult<Page<post::Model>> {
        if db.get_database_backend() == DbBackend::Postgres {
            let followees: Vec<Uuid> = follow::Entity::find()
                .select_only()
                .column(follow::Column::FolloweeId)
                .filter(follow::Column::FollowerId.eq(viewer.user_id))
                .limit(FEED_MERGE_MAX_FOLLOWEES + 1)
                .into_tuple()
                .all(db)
                .await?;
            if followees.len() as u64 <= FEED_MERGE_MAX_FOLLOWEES {
                let mut authors = followees;
                authors.push(viewer.user_id);
                return merged_page_lateral(db, &POSTS_BY, &authors, first, after).await;
            }
        }
        let followed = Query::select()
            .column(follow::Column::FolloweeId)
            .from(follow::Entity)
            .and_where(follow::Column::FollowerId.eq(viewer.user_id))
            .to_owned();
        let select = post::Entity::find().filter(
            Condition::any()
                .add(post::Column::AuthorId.eq(viewer.user_id))
                .add(post::Column::AuthorId.in_subquery(followed)),
        );
        page(
            db,
            select,
            post::Column::Id,
            Direction::NewestFirst,
            first,
            after,
        )
        .await
    }

    pub async fn find_post(&self, id: Uuid) -> ApiResult<post::Model> {
        find_post(&self.db, id).await
    }

    #[tracing::instrument(skip(self, body))]
    pub async fn create_post(&self, viewer: Viewer, body: &str) -> ApiResult<post::Model> {
        let body = PostBody::parse(body, "body")?;
        let model = post::Model {
            id: Uuid::now_v7(),
            author_id: viewer.user_id,
            body: body.into_inner(),
            created_at: Utc::now(),
            edited_at: None,
        };
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id]).await?;
        accounts::ensure_not_deleted(&txn, viewer.user_id).await?;
        post::Entity::insert(post::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await?;
        timelines::fan_out(&txn, self.feed, &model).await?;
        live::post_created(&txn, &model).await?;
        txn.commit().await?;
        self.live.notify();
        Ok(model)
    }

    #[tracing::instrument(skip(self, body))]
    pub async fn edit_post(&self, viewer: Viewer, id: Uuid, body: &str) -> ApiResult<post::Model> {
        let body = PostBody::parse(body, "body")?;
        let existing = self.find_post(id).await?;
        if existing.author_id != viewer.user_id {
            return Err(ApiError::forbidden("only the author can edit a post"));
        }
        let mut active: post::ActiveModel = existing.into();
        active.body = Set(body.into_inner());
        active.edited_at = Set(Some(Utc::now()));
        Ok(active.update(&self.db).await?)
    }

    /// Deletes a post with its comments and likes (by cascade) and its timeline entries,
    /// under the author's lock (which a follow's backfill of the author also takes).
    #[tracing::instrument(skip(self))]
    pub async fn delete_post(&self, viewer: Viewer, id: Uuid) -> ApiResult<bool> {
        let existing = self.find_post(id).await?;
        if existing.author_id != viewer.user_id {
            return Err(ApiError::forbidden("only the author can delete a post"));
        }
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id]).await?;
        post::Entity::delete_by_id(id).exec(&txn).await?;
        timelines::post_deleted(&txn, id).await?;
        txn.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, body))]
    pub async fn add_comment(
        &self,
        viewer: Viewer,
        post_id: Uuid,
        body: &str,
    ) -> ApiResult<comment::Model> {
        let body = CommentBody::parse(body)?;
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id]).await?;
        accounts::ensure_not_deleted(&txn, viewer.user_id).await?;
        find_post(&txn, post_id).await?;
        let model = comment::Model {
            id: Uuid::now_v7(),
            post_id,
            author_id: viewer.user_id,
            body: body.into_inner(),
            created_at: Utc::now(),
        };
        comment::Entity::insert(comment::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(post_gone)?;
        live::comment_added(&txn, &model).await?;
        txn.commit().await?;
        self.live.notify();
        Ok(model)
    }

    /// The comment's author or the post's author may delete a comment.
    #[tracing::instrument(skip(self))]
    pub async fn delete_comment(&self, viewer: Viewer, id: Uuid) -> ApiResult<bool> {
        let existing = comment::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found("no comment has that id"))?;
        if existing.author_id != viewer.user_id {
            let post = post::Entity::find_by_id(existing.post_id)
                .one(&self.db)
                .await?;
            if post.is_none_or(|p| p.author_id != viewer.user_id) {
                return Err(ApiError::forbidden(
                    "only the comment's author or the post's author can delete a comment",
                ));
            }
        }
        comment::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(true)
    }

    /// Likes a post; liking it again changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn like(&self, viewer: Viewer, post_id: Uuid) -> ApiResult<post::Model> {
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id]).await?;
        accounts::ensure_not_deleted(&txn, viewer.user_id).await?;
        let post = find_post(&txn, post_id).await?;
        let inserted = like::Entity::insert(like::ActiveModel {
            post_id: Set(post_id),
            user_id: Set(viewer.user_id),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([like::Column::PostId, like::Column::UserId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(post_gone)?;
        if inserted > 0 {
            live::like_count_changed(&txn, post_id).await?;
        }
        txn.commit().await?;
        if inserted > 0 {
            self.live.notify();
        }
        Ok(post)
    }

    /// Removes a like; unliking a post one does not like changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn unlike(&self, viewer: Viewer, post_id: Uuid) -> ApiResult<post::Model> {
        let post = self.find_post(post_id).await?;
        let txn = begin_write(&self.db).await?;
        let removed = like::Entity::delete_many()
            .filter(like::Column::PostId.eq(post_id))
            .filter(like::Column::UserId.eq(viewer.user_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if removed > 0 {
            live::like_count_changed(&txn, post_id).await?;
        }
        txn.commit().await?;
        if removed > 0 {
            self.live.notify();
        }
        Ok(post)
    }

    /// Follows a user; following again changes nothing; following oneself is refused, and
    /// so is following an account that does not exist (`NOT_FOUND`). The followee's newest
    /// posts join the viewer's timeline in the same transaction.
    #[tracing::instrument(skip(self))]
    pub async fn follow(&self, viewer: Viewer, user_id: Uuid) -> ApiResult<()> {
        if user_id == viewer.user_id {
            return Err(ApiError::bad_input("userId", "you cannot follow yourself"));
        }
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id, user_id]).await?;
        accounts::ensure_not_deleted(&txn, viewer.user_id).await?;
        accounts::ensure_exists(&txn, user_id).await?;
        let inserted = follow::Entity::insert(follow::ActiveModel {
            id: Set(Uuid::now_v7()),
            follower_id: Set(viewer.user_id),
            followee_id: Set(user_id),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([follow::Column::FollowerId, follow::Column::FolloweeId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted > 0 {
            timelines::backfill(&txn, self.feed, viewer.user_id, user_id).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Stops following a user, whose posts leave the viewer's timeline in the same
    /// transaction; unfollowing someone one does not follow changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn unfollow(&self, viewer: Viewer, user_id: Uuid) -> ApiResult<()> {
        let txn = begin_write(&self.db).await?;
        accounts::lock(&txn, &[viewer.user_id, user_id]).await?;
        follow::Entity::delete_many()
            .filter(follow::Column::FollowerId.eq(viewer.user_id))
            .filter(follow::Column::FolloweeId.eq(user_id))
            .exec(&txn)
            .await?;
        timelines::unfollowed(&txn, viewer.user_id, user_id).await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn find_post<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<post::Model> {
    post::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("no post has that id"))
}

/// A write that refers to a post deleted since it was read (its author's account, say).
fn post_gone(err: DbErr) -> ApiError {
    match err.sql_err() {
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
            ApiError::not_found("no post has that id")
        }
        _ => err.into(),
    }
}
