//! The home feed, fanned out on write for most authors and read at feed time for the
//! most-followed ones.
//!
//! A post by an author with at most [`FeedSettings::fanout_max_followers`] followers is
//! written, in the post's transaction, to each follower's timeline (`timelines`): bounded
//! work per post. An author with more is marked in `feed_pulled_authors` instead, and
//! their posts are read at feed time from `posts` (the per-author merge), as are the
//! viewer's own. A feed page merges the two by id (UUIDv7s sort by time). The mark is
//! kept once set, so whether an author's posts are in timelines never changes under a
//! reader; a timeline may hold some of a marked author's older posts, which the merge
//! drops as duplicates.
//!
//! Timelines are capped at [`FeedSettings::timeline_cap`] entries per viewer. Trimming is
//! amortised: `timeline_heads.entries` counts writes since the last trim, and a timeline
//! is trimmed once it passes the cap by a quarter; the oldest entry kept becomes its
//! `horizon`. The timeline holds every fanned-out post from the horizon on, so a page that
//! reaches past it is answered by the fan-out-on-read query instead, which is also the
//! reference the hybrid is tested against.
//!
//! Everything that changes what a viewer follows or what exists keeps the timelines
//! equal to that reference, in the same transaction, under the accounts' locks that
//! writes already take: a follow backfills the followee's newest posts; an unfollow
//! removes them; a deleted post leaves every timeline; a deleted account's timeline and
//! its posts' entries go with it ([`account_deleted`]).

use gantry_entities::{feed_pulled_author, follow, post, timeline, timeline_head};
use gantry_kit::ApiError;
use sea_orm::sea_query::{Expr, OnConflict, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::loaders::POSTS_BY;
use crate::pages::{Direction, Page, merged_page_lateral, page};

/// How the home feed is split between fan-out on write and fan-out on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Authors followed by more accounts than this are read at feed time rather than
    /// written to every follower's timeline; it bounds the rows one post writes, and
    /// under `gantry seed`'s skew only the head of the popularity ranking passes it.
    /// Default 1000.
    pub fanout_max_followers: u64,
    /// Entries kept per viewer's timeline (the newest); older pages are read from
    /// `follows` and `posts`. Default 800.
    pub timeline_cap: u64,
    /// Which query answers a feed page. Timelines are kept up to date either way.
    pub read: FeedRead,
}

/// Which query answers a feed page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FeedRead {
    /// The viewer's timeline merged with the most-followed authors' posts.
    #[default]
    Hybrid,
    /// `follows` and `posts` alone, as before timelines existed: the reference the
    /// hybrid is measured and tested against, and a way back that needs no rebuild,
    /// since every write still keeps the timelines.
    FanoutOnRead,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            fanout_max_followers: 1000,
            timeline_cap: 800,
            read: FeedRead::Hybrid,
        }
    }
}

impl FeedSettings {
    /// A timeline is trimmed back to the cap once it holds this many entries.
    fn trim_at(&self) -> i64 {
        let cap = self.timeline_cap.max(1);
        (cap + cap / 4) as i64
    }
}

/// Rows per insert statement, well under PostgreSQL's 65,535 bind parameters.
const INSERT_CHUNK: usize = 5000;

/// Whether `author`'s posts are read at feed time.
async fn is_pulled<C: ConnectionTrait>(db: &C, author: Uuid) -> Result<bool, DbErr> {
    Ok(feed_pulled_author::Entity::find_by_id(author)
        .one(db)
        .await?
        .is_some())
}

/// Writes a new post to its author's followers' timelines, or marks the author as read
/// at feed time when they have too many followers. Call it in the post's transaction,
/// under the author's lock (which a follow of the author also takes).
pub(crate) async fn fan_out<C: ConnectionTrait>(
    txn: &C,
    settings: FeedSettings,
    post: &post::Model,
) -> Result<(), DbErr> {
    if is_pulled(txn, post.author_id).await? {
        return Ok(());
    }
    let mut followers: Vec<Uuid> = follow::Entity::find()
        .select_only()
        .column(follow::Column::FollowerId)
        .filter(follow::Column::FolloweeId.eq(post.author_id))
        .limit(settings.fanout_max_followers + 1)
        .into_tuple()
        .all(txn)
        .await?;
    if followers.len() as u64 > settings.fanout_max_followers {
        tracing::info!(author_id = %post.author_id, "author passed the fan-out limit; their posts are read at feed time from now on");
        feed_pulled_author::Entity::insert(feed_pulled_author::ActiveModel {
            author_id: Set(post.author_id),
        })
        .on_conflict(
            OnConflict::column(feed_pulled_author::Column::AuthorId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        return Ok(());
    }
    // One order for every writer, so two posts fanned out at once lock heads alike.
    followers.sort_unstable();
    let entries: Vec<(Uuid, Uuid)> = followers.iter().map(|viewer| (*viewer, post.id)).collect();
    insert_entries(txn, &entries, post.author_id).await?;
    grow(txn, settings, &followers, 1, false).await
}

/// After `viewer` followed `author` (under both accounts' locks): the author's newest
/// posts join the viewer's timeline, unless the author is read at feed time.
pub(crate) async fn backfill<C: ConnectionTrait>(
    txn: &C,
    settings: FeedSettings,
    viewer: Uuid,
    author: Uuid,
) -> Result<(), DbErr> {
    if is_pulled(txn, author).await? {
        return Ok(());
    }
    let cap = settings.timeline_cap.max(1);
    let posts: Vec<Uuid> = post::Entity::find()
        .select_only()
        .column(post::Column::Id)
        .filter(post::Column::AuthorId.eq(author))
        .order_by_desc(post::Column::Id)
        .limit(cap)
        .into_tuple()
        .all(txn)
        .await?;
    if posts.is_empty() {
        return Ok(());
    }
    let entries: Vec<(Uuid, Uuid)> = posts.iter().map(|post| (viewer, *post)).collect();
    insert_entries(txn, &entries, author).await?;
    // When the author may have older posts than those copied, the timeline is only
    // complete from the cap-th newest entry on: trim now, which sets that horizon.
    let maybe_more = posts.len() as u64 == cap;
    grow(txn, settings, &[viewer], posts.len() as i64, maybe_more).await
}

/// After `viewer` unfollowed `author`: the author's posts leave the viewer's timeline.
pub(crate) async fn unfollowed<C: ConnectionTrait>(
    txn: &C,
    viewer: Uuid,
    author: Uuid,
) -> Result<(), DbErr> {
    timeline::Entity::delete_many()
        .filter(timeline::Column::ViewerId.eq(viewer))
        .filter(timeline::Column::AuthorId.eq(author))
        .exec(txn)
        .await?;
    Ok(())
}

/// A deleted post leaves every timeline.
pub(crate) async fn post_deleted<C: ConnectionTrait>(txn: &C, post_id: Uuid) -> Result<(), DbErr> {
    timeline::Entity::delete_many()
        .filter(timeline::Column::PostId.eq(post_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// A deleted account's timeline, and its posts' entries in other timelines, go; call it
/// in the deletion's transaction before the account's posts are removed.
pub async fn account_deleted<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> Result<(), DbErr> {
    let posts = Query::select()
        .column(post::Column::Id)
        .from(post::Entity)
        .and_where(post::Column::AuthorId.eq(user_id))
        .to_owned();
    timeline::Entity::delete_many()
        .filter(timeline::Column::PostId.in_subquery(posts))
        .exec(txn)
        .await?;
    timeline::Entity::delete_many()
        .filter(timeline::Column::ViewerId.eq(user_id))
        .exec(txn)
        .await?;
    timeline_head::Entity::delete_by_id(user_id)
        .exec(txn)
        .await?;
    feed_pulled_author::Entity::delete_by_id(user_id)
        .exec(txn)
        .await?;
    Ok(())
}

/// Inserts `(viewer, post)` entries of `author`'s posts; entries already there stay.
async fn insert_entries<C: ConnectionTrait>(
    txn: &C,
    entries: &[(Uuid, Uuid)],
    author: Uuid,
) -> Result<(), DbErr> {
    for chunk in entries.chunks(INSERT_CHUNK) {
        timeline::Entity::insert_many(chunk.iter().map(|(viewer, post)| timeline::ActiveModel {
            viewer_id: Set(*viewer),
            post_id: Set(*post),
            author_id: Set(author),
        }))
        .on_conflict(
            OnConflict::columns([timeline::Column::ViewerId, timeline::Column::PostId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Counts `added` new entries in each of `viewers`' timelines (sorted), and trims those
/// that passed the cap by a quarter, or all of them when `force`.
async fn grow<C: ConnectionTrait>(
    txn: &C,
    settings: FeedSettings,
    viewers: &[Uuid],
    added: i64,
    force: bool,
) -> Result<(), DbErr> {
    for chunk in viewers.chunks(INSERT_CHUNK) {
        timeline_head::Entity::insert_many(chunk.iter().map(|viewer| timeline_head::ActiveModel {
            viewer_id: Set(*viewer),
            entries: Set(added),
            horizon: Set(None),
        }))
        .on_conflict(
            OnConflict::column(timeline_head::Column::ViewerId)
                .value(
                    timeline_head::Column::Entries,
                    Expr::cust("timeline_heads.entries + excluded.entries"),
                )
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    let full: Vec<Uuid> = if force {
        viewers.to_vec()
    } else {
        let mut full = Vec::new();
        for chunk in viewers.chunks(INSERT_CHUNK) {
            full.extend(
                timeline_head::Entity::find()
                    .select_only()
                    .column(timeline_head::Column::ViewerId)
                    .filter(timeline_head::Column::ViewerId.is_in(chunk.iter().copied()))
                    .filter(timeline_head::Column::Entries.gte(settings.trim_at()))
                    .into_tuple::<Uuid>()
                    .all(txn)
                    .await?,
            );
        }
        full
    };
    for viewer in full {
        trim(txn, settings, viewer).await?;
    }
    Ok(())
}

/// Cuts `viewer`'s timeline to its newest entries and moves its horizon to the oldest
/// one kept.
async fn trim<C: ConnectionTrait>(
    txn: &C,
    settings: FeedSettings,
    viewer: Uuid,
) -> Result<(), DbErr> {
    let cap = settings.timeline_cap.max(1);
    let oldest_kept: Option<Uuid> = timeline::Entity::find()
        .select_only()
        .column(timeline::Column::PostId)
        .filter(timeline::Column::ViewerId.eq(viewer))
        .order_by_desc(timeline::Column::PostId)
        .offset(cap - 1)
        .limit(1)
        .into_tuple()
        .one(txn)
        .await?;
    let Some(oldest_kept) = oldest_kept else {
        let entries = timeline::Entity::find()
            .filter(timeline::Column::ViewerId.eq(viewer))
            .count(txn)
            .await?;
        timeline_head::Entity::update_many()
            .col_expr(timeline_head::Column::Entries, Expr::value(entries as i64))
            .filter(timeline_head::Column::ViewerId.eq(viewer))
            .exec(txn)
            .await?;
        return Ok(());
    };
    timeline::Entity::delete_many()
        .filter(timeline::Column::ViewerId.eq(viewer))
        .filter(timeline::Column::PostId.lt(oldest_kept))
        .exec(txn)
        .await?;
    let previous = timeline_head::Entity::find_by_id(viewer)
        .one(txn)
        .await?
        .and_then(|head| head.horizon);
    // Entries older than an earlier horizon were never complete; it stays if newer.
    let horizon = previous.map_or(oldest_kept, |previous| previous.max(oldest_kept));
    timeline_head::Entity::update_many()
        .col_expr(timeline_head::Column::Entries, Expr::value(cap as i64))
        .col_expr(timeline_head::Column::Horizon, Expr::value(horizon))
        .filter(timeline_head::Column::ViewerId.eq(viewer))
        .exec(txn)
        .await?;
    Ok(())
}

/// One page of `viewer`'s feed from their timeline merged with the posts read at feed
/// time (their own and the marked authors' they follow); `None` when the page reaches
/// past the timeline's horizon, where only the fan-out-on-read query is complete.
pub(crate) async fn feed_page<C: ConnectionTrait>(
    db: &C,
    viewer: Uuid,
    first: u64,
    after: Option<Uuid>,
) -> Result<Option<Page<post::Model>>, ApiError> {
    let marked = Query::select()
        .column(feed_pulled_author::Column::AuthorId)
        .from(feed_pulled_author::Entity)
        .to_owned();
    let mut authors: Vec<Uuid> = follow::Entity::find()
        .select_only()
        .column(follow::Column::FolloweeId)
        .filter(follow::Column::FollowerId.eq(viewer))
        .filter(follow::Column::FolloweeId.in_subquery(marked))
        .into_tuple()
        .all(db)
        .await?;
    authors.push(viewer);
    // One more than the page, to tell whether another follows.
    let wanted = first + 1;
    let read = if db.get_database_backend() == DbBackend::Postgres {
        merged_page_lateral(db, &POSTS_BY, &authors, wanted, after).await?
    } else {
        let select = post::Entity::find().filter(post::Column::AuthorId.is_in(authors));
        page(
            db,
            select,
            post::Column::Id,
            Direction::NewestFirst,
            wanted,
            after,
        )
        .await?
    };
    let mut entries = Query::select();
    entries
        .column(timeline::Column::PostId)
        .from(timeline::Entity)
        .and_where(timeline::Column::ViewerId.eq(viewer))
        .order_by(timeline::Column::PostId, Order::Desc)
        .limit(wanted);
    if let Some(after) = after {
        entries.and_where(timeline::Column::PostId.lt(after));
    }
    let fanned = post::Entity::find()
        .filter(post::Column::Id.in_subquery(entries))
        .all(db)
        .await?;

    // Read after the entries: a trim in between only moves the horizon up, which can
    // send this page to the fan-out-on-read query but never past missing entries.
    let horizon = timeline_head::Entity::find_by_id(viewer)
        .one(db)
        .await?
        .and_then(|head| head.horizon);

    let mut rows = read.items;
    rows.extend(fanned);
    rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.id));
    rows.dedup_by_key(|row| row.id);
    rows.truncate(wanted as usize);
    if let Some(horizon) = horizon {
        // Complete only down to the horizon: the row that decides `has_next` must be in it.
        match rows.get(first as usize) {
            Some(last) if last.id >= horizon => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(Page::from_rows(rows, first)))
}
