//! The posts subgraph's GraphQL schema: `Post` (an entity), `Comment`, the `User` fields
//! this subgraph contributes, connections, and the operations. Per-parent fields load
//! through the [`ContentLoader`]; resolvers stay thin.
//!
//! Partial data: every field that joins the two subgraphs is nullable, so that when one
//! subgraph cannot answer, or an account a post points at is gone, only that field is
//! `null` (with an error) and the rest of the response still comes back. That is the
//! `User` fields this subgraph adds (`posts`, `followers`, `following`, the counts,
//! `viewerFollows`), the references to users' accounts (`Post.author`, `Comment.author`,
//! `UserEdge.node`), and the root query fields (`feed`, `latestPosts`), which share a
//! response with the users subgraph's.

use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use gantry_entities::{comment, follow, post};
use gantry_kit::authorization::authenticated;
use gantry_kit::live::LiveDelivery;
use gantry_kit::reads::{ReadChoice, ReadFrom, ReadRoutingExtension};
use gantry_kit::viewer::{RequireViewer, viewer_state};
use gantry_kit::{ApiError, cursor};
use uuid::Uuid;

use crate::domain::parse_id;
use crate::loaders::{
    CommentCount, ContentLoader, FollowerCount, FollowingCount, LikeCount, ListKind, ListPage,
    PageOf, PostById, ReplicaFirst, ViewerFollows, ViewerLiked,
};
use crate::pages::Page;
use crate::service::PostsService;
use crate::subscriptions::Subscription;

pub type PostsSchema = Schema<Query, Mutation, Subscription>;

/// `batch_delay` is how long the loader gathers keys before it queries: long enough for a
/// whole page's fields to ask, short enough not to show in latency. The subscriptions read
/// `live`'s bus and hold permits of its limits.
pub fn build(
    service: Arc<PostsService>,
    batch_delay: std::time::Duration,
    live: &LiveDelivery,
) -> PostsSchema {
    let reads = service.reads().clone();
    let loaders = Loaders {
        primary: DataLoader::new(
            ContentLoader::new(reads.clone(), ReadFrom::Primary),
            tokio::spawn,
        )
        .delay(batch_delay),
        replica: DataLoader::new(ReplicaFirst::new(reads), tokio::spawn).delay(batch_delay),
    };
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .extension(ReadRoutingExtension(service.reads().clone()))
        .data(Arc::new(loaders))
        .data(service)
        .data(live.bus.clone())
        .data(live.limits.clone())
        .limit_depth(32)
        .limit_complexity(10_000)
        .finish()
}

/// The loader of each read route (see [`gantry_kit::reads`]).
pub(crate) struct Loaders {
    pub(crate) primary: DataLoader<ContentLoader>,
    replica: DataLoader<ReplicaFirst>,
}

pub(crate) fn service<'a>(ctx: &Context<'a>) -> &'a Arc<PostsService> {
    ctx.data_unchecked::<Arc<PostsService>>()
}

async fn load<K>(
    ctx: &Context<'_>,
    key: K,
) -> Result<Option<<ContentLoader as Loader<K>>::Value>, ApiError>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    ContentLoader: Loader<K, Error = ApiError>,
{
    let loaders = ctx.data_unchecked::<Arc<Loaders>>();
    match ReadChoice::of(ctx) {
        ReadFrom::Primary => loaders.primary.load_one(key).await,
        ReadFrom::Replica => loaders.replica.load_one(key).await,
    }
}

/// Validates `first`/`after` of a connection field.
/// `first` defaults to 20 (also when a client sends `null`).
fn page_args(first: Option<i32>, after: Option<&str>) -> Result<(u64, Option<Uuid>), ApiError> {
    let first = cursor::page_size(first.unwrap_or(cursor::DEFAULT_PAGE))?;
    Ok((first, after.map(cursor::decode).transpose()?))
}

async fn count<K>(ctx: &Context<'_>, key: K) -> Result<i32, ApiError>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    ContentLoader: Loader<K, Value = i64, Error = ApiError>,
{
    Ok(load(ctx, key)
        .await?
        .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)))
}

#[derive(Debug, SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

fn page_info(has_next: bool, last: Option<Uuid>) -> PageInfo {
    PageInfo {
        has_next_page: has_next,
        end_cursor: last.map(cursor::encode),
    }
}

#[derive(Debug, SimpleObject)]
pub struct PostEdge {
    pub cursor: String,
    pub node: Post,
}

#[derive(Debug, SimpleObject)]
pub struct PostConnection {
    pub edges: Vec<PostEdge>,
    pub page_info: PageInfo,
}

impl From<Page<post::Model>> for PostConnection {
    fn from(page: Page<post::Model>) -> Self {
        let last = page.items.last().map(|p| p.id);
        Self {
            edges: page
                .items
                .into_iter()
                .map(|p| PostEdge {
                    cursor: cursor::encode(p.id),
                    node: Post(p),
                })
                .collect(),
            page_info: page_info(page.has_next, last),
        }
    }
}

#[derive(Debug, SimpleObject)]
pub struct CommentEdge {
    pub cursor: String,
    pub node: Comment,
}

#[derive(Debug, SimpleObject)]
pub struct CommentConnection {
    pub edges: Vec<CommentEdge>,
    pub page_info: PageInfo,
}

impl From<Page<comment::Model>> for CommentConnection {
    fn from(page: Page<comment::Model>) -> Self {
        let last = page.items.last().map(|c| c.id);
        Self {
            edges: page
                .items
                .into_iter()
                .map(|c| CommentEdge {
                    cursor: cursor::encode(c.id),
                    node: Comment(c),
                })
                .collect(),
            page_info: page_info(page.has_next, last),
        }
    }
}

#[derive(Debug, SimpleObject)]
pub struct UserEdge {
    pub cursor: String,
    /// From the users subgraph: null, with an error, when it cannot answer or the account
    /// is gone.
    pub node: Option<User>,
}

#[derive(Debug, SimpleObject)]
pub struct UserConnection {
    pub edges: Vec<UserEdge>,
    pub page_info: PageInfo,
}

/// A page of follows, as the users on the `other` side of each.
fn user_connection(
    page: Page<follow::Model>,
    other: impl Fn(&follow::Model) -> Uuid,
) -> UserConnection {
    let last = page.items.last().map(|f| f.id);
    UserConnection {
        edges: page
            .items
            .iter()
            .map(|f| UserEdge {
                cursor: cursor::encode(f.id),
                node: Some(User { id: other(f) }),
            })
            .collect(),
        page_info: page_info(page.has_next, last),
    }
}

/// A post.
#[derive(Debug, Clone)]
pub struct Post(pub post::Model);

// Cache hint: 10 s, which also makes `_entities` fetches of posts cacheable.
#[Object(cache_control(max_age = 10))]
impl Post {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// From the users subgraph: null, with an error, when it cannot answer or the account
    /// is gone.
    async fn author(&self) -> Option<User> {
        Some(User {
            id: self.0.author_id,
        })
    }

    async fn body(&self) -> &str {
        &self.0.body
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn edited_at(&self) -> Option<DateTime<Utc>> {
        self.0.edited_at
    }

    async fn like_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(count(ctx, LikeCount(self.0.id)).await?)
    }

    async fn comment_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(count(ctx, CommentCount(self.0.id)).await?)
    }

    /// False for anonymous viewers.
    #[graphql(cache_control(private))]
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(viewer) = viewer_state(ctx).viewer() else {
            return Ok(false);
        };
        Ok(load(
            ctx,
            ViewerLiked {
                viewer: viewer.user_id,
                post: self.0.id,
            },
        )
        .await?
        .unwrap_or(false))
    }

    /// Oldest first.
    #[graphql(directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None))]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CommentConnection> {
        let (first, after) = page_args(first, after.as_deref())?;
        let key = PageOf {
            kind: ListKind::Comments,
            parent: self.0.id,
            first,
            after,
        };
        match load(ctx, key).await? {
            Some(ListPage::Comments(page)) => Ok(page.into()),
            _ => Ok(Page::empty().into()),
        }
    }
}

/// A comment on a post.
#[derive(Debug, Clone)]
pub struct Comment(pub comment::Model);

#[Object(cache_control(max_age = 10))]
impl Comment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn post(&self, ctx: &Context<'_>) -> Result<Post> {
        let post = load(ctx, PostById(self.0.post_id)).await?;
        Ok(Post(post.ok_or_else(|| {
            ApiError::not_found("the comment's post was deleted")
        })?))
    }

    /// From the users subgraph: null, with an error, when it cannot answer or the account
    /// is gone.
    async fn author(&self) -> Option<User> {
        Some(User {
            id: self.0.author_id,
        })
    }

    async fn body(&self) -> &str {
        &self.0.body
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

impl User {
    /// A page of this user's followers or followees, as the users on the other side.
    async fn follows(
        &self,
        ctx: &Context<'_>,
        kind: ListKind,
        first: Option<i32>,
        after: Option<&str>,
    ) -> Result<UserConnection, ApiError> {
        let (first, after) = page_args(first, after)?;
        let other = match kind {
            ListKind::Followers => |f: &follow::Model| f.follower_id,
            _ => |f: &follow::Model| f.followee_id,
        };
        let page = match load(
            ctx,
            PageOf {
                kind,
                parent: self.id,
                first,
                after,
            },
        )
        .await?
        {
            Some(ListPage::Follows(page)) => page,
            _ => Page::empty(),
        };
        Ok(user_connection(page, other))
    }
}

/// The fields of `User` that live in this subgraph; the rest come from `users`. Each is
/// null (with an error) when this subgraph cannot answer.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
}

#[Object(cache_control(max_age = 30))]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// Newest first. Null when the posts subgraph cannot answer.
    #[graphql(directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None))]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<PostConnection>> {
        let (first, after) = page_args(first, after.as_deref())?;
        match load(
            ctx,
            PageOf {
                kind: ListKind::PostsBy,
                parent: self.id,
                first,
                after,
            },
        )
        .await?
        {
            Some(ListPage::Posts(page)) => Ok(Some(page.into())),
            _ => Ok(Some(Page::empty().into())),
        }
    }

    /// Most recent follower first. Null when the posts subgraph cannot answer.
    #[graphql(directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None))]
    async fn followers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<UserConnection>> {
        Ok(Some(
            self.follows(ctx, ListKind::Followers, first, after.as_deref())
                .await?,
        ))
    }

    /// Most recently followed first. Null when the posts subgraph cannot answer.
    #[graphql(directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None))]
    async fn following(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<UserConnection>> {
        Ok(Some(
            self.follows(ctx, ListKind::Following, first, after.as_deref())
                .await?,
        ))
    }

    /// Null when the posts subgraph cannot answer.
    async fn follower_count(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        Ok(Some(count(ctx, FollowerCount(self.id)).await?))
    }

    /// Null when the posts subgraph cannot answer.
    async fn following_count(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        Ok(Some(count(ctx, FollowingCount(self.id)).await?))
    }

    /// False for anonymous viewers. Null when the posts subgraph cannot answer.
    #[graphql(cache_control(private))]
    async fn viewer_follows(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        let Some(viewer) = viewer_state(ctx).viewer() else {
            return Ok(Some(false));
        };
        Ok(Some(
            load(
                ctx,
                ViewerFollows {
                    viewer: viewer.user_id,
                    user: self.id,
                },
            )
            .await?
            .unwrap_or(false),
        ))
    }
}

#[derive(Debug, InputObject)]
pub struct CreatePostInput {
    pub body: String,
}

#[derive(Debug, Default)]
pub struct Query;

#[Object]
impl Query {
    /// Null when no post has that id.
    #[graphql(cache_control(max_age = 10))]
    async fn post(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Post>> {
        let id = parse_id(&id, "id")?;
        Ok(load(ctx, PostById(id)).await?.map(Post))
    }

    /// The viewer's own posts and those of everyone they follow, newest first. Null, with
    /// an error, without a token or when the posts subgraph cannot answer.
    #[graphql(
        cache_control(private),
        directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None),
        directive = authenticated::apply()
    )]
    async fn feed(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<PostConnection>> {
        let viewer = viewer_state(ctx).require()?;
        let (first, after) = page_args(first, after.as_deref())?;
        Ok(Some(
            service(ctx)
                .feed(ReadChoice::of(ctx), viewer, first, after)
                .await?
                .into(),
        ))
    }

    /// Everyone's posts, newest first. Null, with an error, when the posts subgraph cannot
    /// answer.
    #[graphql(cache_control(max_age = 5), directive = cursor::list_size::apply(None, Some(vec!["first".into()]), Some(vec!["edges".into()]), None))]
    async fn latest_posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<PostConnection>> {
        let (first, after) = page_args(first, after.as_deref())?;
        Ok(Some(
            service(ctx)
                .latest(ReadChoice::of(ctx), first, after)
                .await?
                .into(),
        ))
    }

    #[graphql(entity)]
    async fn find_post_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Post>> {
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        Ok(load(ctx, PostById(id)).await?.map(Post))
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> Option<User> {
        Uuid::parse_str(&id).ok().map(|id| User { id })
    }
}

#[derive(Debug, Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    #[graphql(directive = authenticated::apply())]
    async fn create_post(&self, ctx: &Context<'_>, input: CreatePostInput) -> Result<Post> {
        let viewer = viewer_state(ctx).require()?;
        Ok(Post(service(ctx).create_post(viewer, &input.body).await?))
    }

    /// Only the author may edit.
    #[graphql(directive = authenticated::apply())]
    async fn edit_post(&self, ctx: &Context<'_>, id: ID, body: String) -> Result<Post> {
        let viewer = viewer_state(ctx).require()?;
        let id = parse_id(&id, "id")?;
        Ok(Post(service(ctx).edit_post(viewer, id, &body).await?))
    }

    /// Only the author may delete; comments and likes go with the post.
    #[graphql(directive = authenticated::apply())]
    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = viewer_state(ctx).require()?;
        let id = parse_id(&id, "id")?;
        Ok(service(ctx).delete_post(viewer, id).await?)
    }

    #[graphql(directive = authenticated::apply())]
    async fn add_comment(&self, ctx: &Context<'_>, post_id: ID, body: String) -> Result<Comment> {
        let viewer = viewer_state(ctx).require()?;
        let post_id = parse_id(&post_id, "postId")?;
        Ok(Comment(
            service(ctx).add_comment(viewer, post_id, &body).await?,
        ))
    }

    /// The comment's author or the post's author may delete it.
    #[graphql(directive = authenticated::apply())]
    async fn delete_comment(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let viewer = viewer_state(ctx).require()?;
        let id = parse_id(&id, "id")?;
        Ok(service(ctx).delete_comment(viewer, id).await?)
    }

    /// Idempotent.
    #[graphql(directive = authenticated::apply())]
    async fn like_post(&self, ctx: &Context<'_>, post_id: ID) -> Result<Post> {
        let viewer = viewer_state(ctx).require()?;
        let post_id = parse_id(&post_id, "postId")?;
        Ok(Post(service(ctx).like(viewer, post_id).await?))
    }

    /// Idempotent.
    #[graphql(directive = authenticated::apply())]
    async fn unlike_post(&self, ctx: &Context<'_>, post_id: ID) -> Result<Post> {
        let viewer = viewer_state(ctx).require()?;
        let post_id = parse_id(&post_id, "postId")?;
        Ok(Post(service(ctx).unlike(viewer, post_id).await?))
    }

    /// Idempotent; following yourself is `BAD_USER_INPUT`, an account that does not exist
    /// (or no longer does) `NOT_FOUND`.
    #[graphql(directive = authenticated::apply())]
    async fn follow(&self, ctx: &Context<'_>, user_id: ID) -> Result<User> {
        let viewer = viewer_state(ctx).require()?;
        let id = parse_id(&user_id, "userId")?;
        service(ctx).follow(viewer, id).await?;
        Ok(User { id })
    }

    /// Idempotent.
    #[graphql(directive = authenticated::apply())]
    async fn unfollow(&self, ctx: &Context<'_>, user_id: ID) -> Result<User> {
        let viewer = viewer_state(ctx).require()?;
        let id = parse_id(&user_id, "userId")?;
        service(ctx).unfollow(viewer, id).await?;
        Ok(User { id })
    }
}
