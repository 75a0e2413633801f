//! The posts subgraph's live events, written to `post_live_events` in the transaction of
//! the write they tell of (see [`gantry_kit::live`]), and read back by the subscriptions
//! ([`crate::subscriptions`]). Each carries what its subscribers filter on, and the row
//! itself where that saves every subscriber a read:
//! - `post.created`: `{"post": {id, authorId, body, createdAt}}`;
//! - `post.comment_added`: `{"comment": {id, postId, authorId, body, createdAt}}`;
//! - `post.like_count_changed`: `{"postId"}` (a like or an unlike that changed something).

use chrono::{DateTime, Utc};
use gantry_entities::{comment, post};
use gantry_kit::live::outbox::record;
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The table this subgraph's live events are written to.
pub const TABLE: &str = "post_live_events";

/// This subgraph's name on the live-event channel (`{prefix}live:posts`).
pub const SUBGRAPH: &str = "posts";

pub const TOPIC_POST_CREATED: &str = "post.created";
pub const TOPIC_COMMENT_ADDED: &str = "post.comment_added";
pub const TOPIC_LIKE_COUNT_CHANGED: &str = "post.like_count_changed";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostRow {
    id: Uuid,
    author_id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentRow {
    id: Uuid,
    post_id: Uuid,
    author_id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PostCreated {
    post: PostRow,
}

#[derive(Debug, Serialize, Deserialize)]
struct CommentAdded {
    comment: CommentRow,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LikeCountChanged {
    post_id: Uuid,
}

fn json(value: &impl Serialize) -> Result<serde_json::Value, DbErr> {
    serde_json::to_value(value).map_err(|err| DbErr::Custom(format!("a live event: {err}")))
}

/// Records that `post` was created, on its transaction.
pub async fn post_created<C: ConnectionTrait>(txn: &C, post: &post::Model) -> Result<(), DbErr> {
    let event = PostCreated {
        post: PostRow {
            id: post.id,
            author_id: post.author_id,
            body: post.body.clone(),
            created_at: post.created_at,
        },
    };
    record(txn, TABLE, TOPIC_POST_CREATED, &json(&event)?).await
}

/// Records that `comment` was added, on its transaction.
pub async fn comment_added<C: ConnectionTrait>(
    txn: &C,
    comment: &comment::Model,
) -> Result<(), DbErr> {
    let event = CommentAdded {
        comment: CommentRow {
            id: comment.id,
            post_id: comment.post_id,
            author_id: comment.author_id,
            body: comment.body.clone(),
            created_at: comment.created_at,
        },
    };
    record(txn, TABLE, TOPIC_COMMENT_ADDED, &json(&event)?).await
}

/// Records that the like count of `post_id` changed, on the transaction that changed it.
pub async fn like_count_changed<C: ConnectionTrait>(txn: &C, post_id: Uuid) -> Result<(), DbErr> {
    record(
        txn,
        TABLE,
        TOPIC_LIKE_COUNT_CHANGED,
        &json(&LikeCountChanged { post_id })?,
    )
    .await
}

/// The post a `post.created` payload carries.
pub fn created_post(payload: &str) -> Option<post::Model> {
    let PostCreated { post } = serde_json::from_str(payload).ok()?;
    Some(post::Model {
        id: post.id,
        author_id: post.author_id,
        body: post.body,
        created_at: post.created_at,
        edited_at: None,
    })
}

/// The comment a `post.comment_added` payload carries.
pub fn added_comment(payload: &str) -> Option<comment::Model> {
    let CommentAdded { comment } = serde_json::from_str(payload).ok()?;
    Some(comment::Model {
        id: comment.id,
        post_id: comment.post_id,
        author_id: comment.author_id,
        body: comment.body,
        created_at: comment.created_at,
    })
}

/// The post whose like count a `post.like_count_changed` payload says changed.
pub fn liked_post(payload: &str) -> Option<Uuid> {
    let LikeCountChanged { post_id } = serde_json::from_str(payload).ok()?;
    Some(post_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_reads_back_from_its_event() {
        let comment = comment::Model {
            id: Uuid::now_v7(),
            post_id: Uuid::now_v7(),
            author_id: Uuid::now_v7(),
            body: "hello".into(),
            created_at: Utc::now(),
        };
        let event = CommentAdded {
            comment: CommentRow {
                id: comment.id,
                post_id: comment.post_id,
                author_id: comment.author_id,
                body: comment.body.clone(),
                created_at: comment.created_at,
            },
        };
        let payload = json(&event).expect("json").to_string();
        assert_eq!(added_comment(&payload), Some(comment));
        assert_eq!(
            created_post(&payload),
            None,
            "another topic's payload is not a post"
        );
    }
}
