//! Account deletion, as seen from the posts side. The users subgraph writes an
//! `user.account_deleted` event to its outbox in the transaction that deletes the account;
//! this consumer reads the outbox in id order from its stored offset, removes the user's
//! posts (with their comments and likes), comments, likes and follows, and moves its offset
//! in the same transaction. Delivery is at least once; handling is idempotent; events
//! written while this subgraph is down are handled when it comes back. Once a deletion is
//! committed, the ids whose data it changed (the user, their posts, the posts they liked or
//! commented on, the accounts they followed or were followed by) go to [`Invalidations`], so
//! cached responses showing stale counts are dropped at once rather than at their TTL.

use std::time::Duration;

use chrono::Utc;
use gantry_entities::{comment, follow, like, outbox_event, outbox_offset, post};
use gantry_kit::db::begin_write;
use gantry_kit::invalidation::Invalidations;
use gantry_kit::outbox::OutboxSignal;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;
use tokio::sync::watch;
use uuid::Uuid;

/// This consumer's name in `outbox_offsets`.
pub const CONSUMER: &str = "posts.account_deleted";
const BATCH: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDeleted {
    user_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct AccountDeletionConsumer {
    db: DatabaseConnection,
    poll_interval: Duration,
    signal: Option<OutboxSignal>,
    invalidations: Invalidations,
}

impl AccountDeletionConsumer {
    pub fn new(
        db: DatabaseConnection,
        poll_interval: Duration,
        signal: Option<OutboxSignal>,
        invalidations: Invalidations,
    ) -> Self {
        Self {
            db,
            poll_interval,
            signal,
            invalidations,
        }
    }

    /// Handles events until `stop` turns true: at start, on every poll interval, and at
    /// once when the in-process signal rings.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            interval_ms = self.poll_interval.as_millis() as u64,
            "account-deletion consumer started"
        );
        let mut failures = 0u32;
        loop {
            let wait = match self.drain().await {
                Ok(_) => {
                    failures = 0;
                    self.poll_interval
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, failures, "reading the outbox failed; retrying");
                    (self.poll_interval * failures.min(30)).min(Duration::from_secs(30))
                }
            };
            let signal = self.signal.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = async move {
                    match signal {
                        Some(signal) => signal.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.wait_for(|stop| *stop) => {
                    tracing::info!("account-deletion consumer stopped");
                    return;
                }
            }
        }
    }

    /// Handles every pending event; returns how many.
    pub async fn drain(&self) -> Result<usize, DbErr> {
        let mut handled = 0;
        loop {
            let n = self.handle_batch().await?;
            handled += n;
            if n < BATCH as usize {
                return Ok(handled);
            }
        }
    }

    async fn handle_batch(&self) -> Result<usize, DbErr> {
        let offset = outbox_offset::Entity::find_by_id(CONSUMER.to_owned())
            .one(&self.db)
            .await?;
        let mut events = outbox_event::Entity::find()
            .filter(outbox_event::Column::Topic.eq(outbox_event::TOPIC_ACCOUNT_DELETED))
            .order_by_asc(outbox_event::Column::Id)
            .limit(BATCH);
        if let Some(offset) = offset {
            events = events.filter(outbox_event::Column::Id.gt(offset.last_event_id));
        }
        let events = events.all(&self.db).await?;
        for event in &events {
            self.handle(event).await?;
        }
        Ok(events.len())
    }

    async fn handle(&self, event: &outbox_event::Model) -> Result<(), DbErr> {
        let txn = begin_write(&self.db).await?;
        let mut changed = Vec::new();
        match serde_json::from_str::<AccountDeleted>(&event.payload) {
            Ok(AccountDeleted { user_id }) => {
                changed = affected_ids(&txn, user_id).await?;
                let posts = post::Entity::delete_many()
                    .filter(post::Column::AuthorId.eq(user_id))
                    .exec(&txn)
                    .await?;
                let comments = comment::Entity::delete_many()
                    .filter(comment::Column::AuthorId.eq(user_id))
                    .exec(&txn)
                    .await?;
                let likes = like::Entity::delete_many()
                    .filter(like::Column::UserId.eq(user_id))
                    .exec(&txn)
                    .await?;
                let follows = follow::Entity::delete_many()
                    .filter(
                        Condition::any()
                            .add(follow::Column::FollowerId.eq(user_id))
                            .add(follow::Column::FolloweeId.eq(user_id)),
                    )
                    .exec(&txn)
                    .await?;
                tracing::info!(
                    %user_id,
                    event_id = %event.id,
                    posts = posts.rows_affected,
                    comments = comments.rows_affected,
                    likes = likes.rows_affected,
                    follows = follows.rows_affected,
                    "removed a deleted account's content"
                );
            }
            // A payload this version cannot read is skipped, loudly, rather than blocking
            // every later event.
            Err(err) => {
                tracing::error!(event_id = %event.id, error = %err, "unreadable account-deleted event skipped")
            }
        }
        outbox_offset::Entity::insert(outbox_offset::ActiveModel {
            consumer: Set(CONSUMER.to_owned()),
            last_event_id: Set(event.id),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(outbox_offset::Column::Consumer)
                .update_columns([
                    outbox_offset::Column::LastEventId,
                    outbox_offset::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        self.invalidations.invalidate(changed).await;
        Ok(())
    }
}

/// Every id whose data the deletion of `user_id` changes: the user; their posts (gone);
/// the posts they liked or commented on (counts and comment lists); the accounts they
/// followed and that followed them (follower and following counts).
async fn affected_ids(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<Uuid>, DbErr> {
    let mut ids = vec![user_id];
    ids.extend(
        post::Entity::find()
            .select_only()
            .column(post::Column::Id)
            .filter(post::Column::AuthorId.eq(user_id))
            .into_tuple::<Uuid>()
            .all(db)
            .await?,
    );
    ids.extend(
        like::Entity::find()
            .select_only()
            .column(like::Column::PostId)
            .filter(like::Column::UserId.eq(user_id))
            .into_tuple::<Uuid>()
            .all(db)
            .await?,
    );
    ids.extend(
        comment::Entity::find()
            .select_only()
            .column(comment::Column::PostId)
            .filter(comment::Column::AuthorId.eq(user_id))
            .into_tuple::<Uuid>()
            .all(db)
            .await?,
    );
    let follows: Vec<(Uuid, Uuid)> = follow::Entity::find()
        .select_only()
        .column(follow::Column::FollowerId)
        .column(follow::Column::FolloweeId)
        .filter(
            Condition::any()
                .add(follow::Column::FollowerId.eq(user_id))
                .add(follow::Column::FolloweeId.eq(user_id)),
        )
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(follows.into_iter().flat_map(|(a, b)| [a, b]));
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
