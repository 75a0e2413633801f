//! The posts subgraph's `Subscription` root: live posts, comments and like counts, read
//! from the process's live-event bus ([`gantry_kit::live`]) and filtered per subscriber.
//!
//! - `postCreated: Post!` — posts by accounts the viewer follows, as they are created
//!   (not the viewer's own). Needs a viewer: `UNAUTHENTICATED` without one. Whether the
//!   viewer follows the author is read when the post arrives, through the loader every
//!   subscription shares, so one post reaching many subscribers costs one batched query.
//! - `commentAdded(postId: ID!): Comment!` — comments on one post.
//! - `postLikeCountChanged(postId: ID!): Post!` — the post, each time its like count
//!   changes. The post rather than a pair of id and count: it is the type `likePost`
//!   answers with, so a client's normalised cache (`Post:id`) updates `likeCount` in place,
//!   and a client may ask for any other field of the post beside it. `likeCount` is read
//!   when the event arrives, so it is the count after the change (or a later one).
//!
//! `commentAdded` and `postLikeCountChanged` refuse a post that does not exist
//! (`NOT_FOUND`) and a malformed id (`BAD_USER_INPUT`). Every subscription holds a place
//! of the connection's and the process's limits while it lives
//! (`TOO_MANY_SUBSCRIPTIONS`, see [`gantry_kit::live::limits`]).

use std::sync::Arc;

use async_graphql::{Context, ID, Result, Subscription as SubscriptionRoot};
use futures::{Stream, StreamExt};
use gantry_kit::authorization::authenticated;
use gantry_kit::live::{LiveBus, SubscriptionLimits, SubscriptionPermit};
use gantry_kit::viewer::{RequireViewer, viewer_state};
use uuid::Uuid;

use crate::domain::parse_id;
use crate::live;
use crate::loaders::{PostById, ViewerFollows};
use crate::schema::{Comment, Loaders, Post, service};

#[derive(Debug, Default)]
pub struct Subscription;

fn bus<'a>(ctx: &Context<'a>) -> &'a LiveBus {
    ctx.data_unchecked::<LiveBus>()
}

fn permit(ctx: &Context<'_>) -> Result<SubscriptionPermit> {
    Ok(ctx
        .data_unchecked::<SubscriptionLimits>()
        .acquire_for(ctx)?)
}

fn loaders(ctx: &Context<'_>) -> Arc<Loaders> {
    ctx.data_unchecked::<Arc<Loaders>>().clone()
}

/// `stream`, holding `permit` for as long as it lives.
fn holding<T>(
    permit: SubscriptionPermit,
    stream: impl Stream<Item = T> + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    stream.map(move |item| {
        let _held = &permit;
        item
    })
}

/// The post `post_id` names, which must exist.
async fn existing_post(ctx: &Context<'_>, post_id: &ID) -> Result<Uuid> {
    let id = parse_id(post_id, "postId")?;
    service(ctx).find_post(id).await?;
    Ok(id)
}

#[SubscriptionRoot]
impl Subscription {
    /// Posts by accounts the viewer follows, as they are created.
    #[graphql(directive = authenticated::apply())]
    async fn post_created(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Post> + use<>> {
        let viewer = viewer_state(ctx).require()?;
        let permit = permit(ctx)?;
        let loaders = loaders(ctx);
        let posts = bus(ctx)
            .topic(live::TOPIC_POST_CREATED)
            .filter_map(move |event| {
                let loaders = loaders.clone();
                async move {
                    let post = live::created_post(&event.payload)?;
                    if post.author_id == viewer.user_id {
                        return None;
                    }
                    let follows = ViewerFollows {
                        viewer: viewer.user_id,
                        user: post.author_id,
                    };
                    let follows = loaders.primary.load_one(follows).await.ok()??;
                    follows.then_some(Post(post))
                }
            });
        Ok(holding(permit, posts))
    }

    /// Comments on the post `postId`, as they are added.
    async fn comment_added(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
    ) -> Result<impl Stream<Item = Comment> + use<>> {
        let permit = permit(ctx)?;
        let post_id = existing_post(ctx, &post_id).await?;
        let comments =
            bus(ctx)
                .topic(live::TOPIC_COMMENT_ADDED)
                .filter_map(move |event| async move {
                    live::added_comment(&event.payload)
                        .filter(|comment| comment.post_id == post_id)
                        .map(Comment)
                });
        Ok(holding(permit, comments))
    }

    /// The post `postId` each time its like count changes.
    async fn post_like_count_changed(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
    ) -> Result<impl Stream<Item = Post> + use<>> {
        let permit = permit(ctx)?;
        let post_id = existing_post(ctx, &post_id).await?;
        let loaders = loaders(ctx);
        let posts = bus(ctx)
            .topic(live::TOPIC_LIKE_COUNT_CHANGED)
            .filter_map(move |event| {
                let loaders = loaders.clone();
                async move {
                    if live::liked_post(&event.payload)? != post_id {
                        return None;
                    }
                    let post = loaders.primary.load_one(PostById(post_id)).await.ok()??;
                    Some(Post(post))
                }
            });
        Ok(holding(permit, posts))
    }
}
