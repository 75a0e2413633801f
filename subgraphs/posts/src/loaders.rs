//! Every per-parent lookup of the posts subgraph, batched. One [`ContentLoader`] answers
//! many key types; async-graphql's `DataLoader` gathers the keys of each type requested
//! while a response is resolved and calls `load` once per type, so a page of 50 posts
//! costs the same number of statements as a page of 5.

use std::collections::{HashMap, HashSet};

use async_graphql::dataloader::Loader;
use gantry_entities::{comment, follow, like, post};
use gantry_kit::ApiError;
use gantry_kit::reads::{ReadFrom, ReadRouting};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::pages::{Direction, Page, ParentList, pages_per_parent};

/// Loads from the pool its requests were routed to: one loader reads where the replica
/// may answer, another from the primary (for writers and mutations), so a batch never
/// mixes the two.
#[derive(Debug, Clone)]
pub struct ContentLoader {
    reads: ReadRouting,
    from: ReadFrom,
}

impl ContentLoader {
    pub fn new(reads: ReadRouting, from: ReadFrom) -> Self {
        Self { reads, from }
    }

    fn db(&self) -> &DatabaseConnection {
        self.reads.connection(self.from)
    }
}

/// The replica's loader with the primary's behind it: a batch the replica fails (it went
/// away since its last check) is loaded again from the primary, so the request does not
/// fail.
#[derive(Debug, Clone)]
pub struct ReplicaFirst {
    replica: ContentLoader,
    primary: ContentLoader,
}

impl ReplicaFirst {
    pub fn new(reads: ReadRouting) -> Self {
        Self {
            replica: ContentLoader::new(reads.clone(), ReadFrom::Replica),
            primary: ContentLoader::new(reads, ReadFrom::Primary),
        }
    }
}

impl<K> Loader<K> for ReplicaFirst
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    ContentLoader: Loader<K, Error = ApiError>,
{
    type Value = <ContentLoader as Loader<K>>::Value;
    type Error = ApiError;

    async fn load(&self, keys: &[K]) -> Loaded<K, Self::Value> {
        match self.replica.load(keys).await {
            Ok(loaded) => Ok(loaded),
            Err(_) => {
                self.replica.reads.replica_read_failed();
                self.primary.load(keys).await
            }
        }
    }
}

/// A post by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostById(pub Uuid);
/// How many likes a post has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LikeCount(pub Uuid);
/// How many comments a post has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommentCount(pub Uuid);
/// Whether `viewer` likes `post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewerLiked {
    pub viewer: Uuid,
    pub post: Uuid,
}
/// How many followers a user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FollowerCount(pub Uuid);
/// How many users a user follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FollowingCount(pub Uuid);
/// Whether `viewer` follows `user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewerFollows {
    pub viewer: Uuid,
    pub user: Uuid,
}

/// Which per-parent list a [`PageOf`] key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// A post's comments, oldest first.
    Comments,
    /// A user's posts, newest first.
    PostsBy,
    /// A user's followers, newest follow first.
    Followers,
    /// Whom a user follows, newest follow first.
    Following,
}

/// One page of a per-parent list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageOf {
    pub kind: ListKind,
    pub parent: Uuid,
    pub first: u64,
    pub after: Option<Uuid>,
}

/// A page of one of the per-parent lists.
#[derive(Debug, Clone)]
pub enum ListPage {
    Comments(Page<comment::Model>),
    Posts(Page<post::Model>),
    Follows(Page<follow::Model>),
}

type Loaded<K, V> = Result<HashMap<K, V>, ApiError>;

impl Loader<PostById> for ContentLoader {
    type Value = post::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[PostById]) -> Loaded<PostById, post::Model> {
        let rows = post::Entity::find()
            .filter(post::Column::Id.is_in(keys.iter().map(|k| k.0)))
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|p| (PostById(p.id), p)).collect())
    }
}

/// `SELECT key, COUNT(*) … WHERE key IN (…) GROUP BY key`, with zero for absent keys.
async fn counts<E: EntityTrait>(
    db: &DatabaseConnection,
    key_col: E::Column,
    ids: impl Iterator<Item = Uuid> + Clone,
) -> Result<HashMap<Uuid, i64>, ApiError> {
    let rows: Vec<(Uuid, i64)> = E::find()
        .select_only()
        .column(key_col)
        .column_as(ExprTrait::count(Expr::col(key_col)), "count")
        .filter(key_col.is_in(ids.clone()))
        .group_by(key_col)
        .into_tuple()
        .all(db)
        .await?;
    let mut counts: HashMap<Uuid, i64> = ids.map(|id| (id, 0)).collect();
    counts.extend(rows);
    Ok(counts)
}

/// `Loader<$key>`: counts rows of `$entity` per `$column`, one `GROUP BY` per batch.
macro_rules! count_loader {
    ($key:ident, $entity:ty, $column:expr) => {
        impl Loader<$key> for ContentLoader {
            type Value = i64;
            type Error = ApiError;

            async fn load(&self, keys: &[$key]) -> Loaded<$key, i64> {
                let counts =
                    counts::<$entity>(self.db(), $column, keys.iter().map(|k| k.0)).await?;
                Ok(counts.into_iter().map(|(id, n)| ($key(id), n)).collect())
            }
        }
    };
}

count_loader!(LikeCount, like::Entity, like::Column::PostId);
count_loader!(CommentCount, comment::Entity, comment::Column::PostId);
count_loader!(FollowerCount, follow::Entity, follow::Column::FolloweeId);
count_loader!(FollowingCount, follow::Entity, follow::Column::FollowerId);

/// Which of the `(viewer, target)` pairs exist as rows of `E`, in one statement.
async fn existing_pairs<E: EntityTrait>(
    db: &DatabaseConnection,
    viewer_col: E::Column,
    target_col: E::Column,
    pairs: impl Iterator<Item = (Uuid, Uuid)>,
) -> Result<HashSet<(Uuid, Uuid)>, ApiError> {
    let (viewers, targets): (HashSet<Uuid>, HashSet<Uuid>) = pairs.unzip();
    Ok(E::find()
        .select_only()
        .column(viewer_col)
        .column(target_col)
        .filter(viewer_col.is_in(viewers))
        .filter(target_col.is_in(targets))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

impl Loader<ViewerLiked> for ContentLoader {
    type Value = bool;
    type Error = ApiError;

    async fn load(&self, keys: &[ViewerLiked]) -> Loaded<ViewerLiked, bool> {
        let pairs = keys.iter().map(|k| (k.viewer, k.post));
        let found = existing_pairs::<like::Entity>(
            self.db(),
            like::Column::UserId,
            like::Column::PostId,
            pairs,
        )
        .await?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.contains(&(k.viewer, k.post))))
            .collect())
    }
}

impl Loader<ViewerFollows> for ContentLoader {
    type Value = bool;
    type Error = ApiError;

    async fn load(&self, keys: &[ViewerFollows]) -> Loaded<ViewerFollows, bool> {
        let pairs = keys.iter().map(|k| (k.viewer, k.user));
        let found = existing_pairs::<follow::Entity>(
            self.db(),
            follow::Column::FollowerId,
            follow::Column::FolloweeId,
            pairs,
        )
        .await?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.contains(&(k.viewer, k.user))))
            .collect())
    }
}

const COMMENTS: ParentList<comment::Entity> = ParentList {
    parent_col: comment::Column::PostId,
    id_col: comment::Column::Id,
    direction: Direction::OldestFirst,
    parent_of: |c| c.post_id,
};
/// A user's posts, newest first; also the lists a feed merges.
pub const POSTS_BY: ParentList<post::Entity> = ParentList {
    parent_col: post::Column::AuthorId,
    id_col: post::Column::Id,
    direction: Direction::NewestFirst,
    parent_of: |p| p.author_id,
};
const FOLLOWERS: ParentList<follow::Entity> = ParentList {
    parent_col: follow::Column::FolloweeId,
    id_col: follow::Column::Id,
    direction: Direction::NewestFirst,
    parent_of: |f| f.followee_id,
};
const FOLLOWING: ParentList<follow::Entity> = ParentList {
    parent_col: follow::Column::FollowerId,
    id_col: follow::Column::Id,
    direction: Direction::NewestFirst,
    parent_of: |f| f.follower_id,
};

impl Loader<PageOf> for ContentLoader {
    type Value = ListPage;
    type Error = ApiError;

    /// Keys of one kind, size and cursor share a statement; a response usually asks for
    /// one such group per list field (e.g. `comments(first: 3)` of every post).
    async fn load(&self, keys: &[PageOf]) -> Loaded<PageOf, ListPage> {
        let mut groups: HashMap<(ListKind, u64, Option<Uuid>), Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups
                .entry((key.kind, key.first, key.after))
                .or_default()
                .push(key.parent);
        }
        let mut loaded = HashMap::with_capacity(keys.len());
        for ((kind, first, after), parents) in groups {
            let pages: Vec<(Uuid, ListPage)> = match kind {
                ListKind::Comments => wrap(
                    pages_per_parent(self.db(), &COMMENTS, &parents, first, after).await?,
                    ListPage::Comments,
                ),
                ListKind::PostsBy => wrap(
                    pages_per_parent(self.db(), &POSTS_BY, &parents, first, after).await?,
                    ListPage::Posts,
                ),
                ListKind::Followers => wrap(
                    pages_per_parent(self.db(), &FOLLOWERS, &parents, first, after).await?,
                    ListPage::Follows,
                ),
                ListKind::Following => wrap(
                    pages_per_parent(self.db(), &FOLLOWING, &parents, first, after).await?,
                    ListPage::Follows,
                ),
            };
            loaded.extend(pages.into_iter().map(|(parent, page)| {
                (
                    PageOf {
                        kind,
                        parent,
                        first,
                        after,
                    },
                    page,
                )
            }));
        }
        Ok(loaded)
    }
}

fn wrap<T>(
    pages: HashMap<Uuid, Page<T>>,
    variant: fn(Page<T>) -> ListPage,
) -> Vec<(Uuid, ListPage)> {
    pages
        .into_iter()
        .map(|(parent, page)| (parent, variant(page)))
        .collect()
}
