//! Account events from Redis Streams, for a posts subgraph with a database of its own:
//! the users subgraph's relay appends its outbox events to `{prefix}events:users`, and
//! this subgraph reads them as the consumer group `posts`
//! ([`gantry_kit::events::StreamConsumer`]). Each event is applied exactly as the
//! outbox consumer applies it ([`crate::consumer`]): a created account becomes known, a
//! deleted one gets its tombstone and loses its content, in one transaction; the ids a
//! deletion changed then go to [`Invalidations`]. A profile update changes nothing in
//! the posts database (it keeps no copy of a profile): its account's id goes to
//! [`Invalidations`], which reach every gateway through their shared Redis cache.
//! Applying an event again changes nothing, as at-least-once delivery needs. Topics this
//! subgraph has no use for are acknowledged and left alone.

use gantry_entities::outbox_event;
use gantry_kit::db::{begin_write, describe};
use gantry_kit::events::{Event, EventHandler, HandleError};
use gantry_kit::invalidation::Invalidations;
use sea_orm::DatabaseConnection;

use crate::consumer::{Applied, TOPICS, apply, updated_profile};

/// The group this subgraph's replicas read events in.
pub const GROUP: &str = "posts";

/// The stream (by producer) this subgraph reads account events from.
pub const PRODUCER: &str = "users";

/// Applies account events to the posts database.
#[derive(Debug, Clone)]
pub struct AccountEvents {
    db: DatabaseConnection,
    invalidations: Invalidations,
}

impl AccountEvents {
    pub fn new(db: DatabaseConnection, invalidations: Invalidations) -> Self {
        Self { db, invalidations }
    }
}

impl EventHandler for AccountEvents {
    async fn handle(&self, event: &Event) -> Result<(), HandleError> {
        if !TOPICS.contains(&event.topic.as_str()) {
            return Ok(());
        }
        if event.topic == outbox_event::TOPIC_PROFILE_UPDATED {
            // No database work: only what the caches hold about the account changes.
            let user_id = updated_profile(&event.payload).map_err(HandleError::Poison)?;
            self.invalidations.invalidate(vec![user_id]).await;
            return Ok(());
        }
        let retry = |err: sea_orm::DbErr| HandleError::Retry(describe(&err));
        let txn = begin_write(&self.db).await.map_err(retry)?;
        match apply(&txn, &event.topic, &event.payload)
            .await
            .map_err(retry)?
        {
            Applied::Changed(changed) => {
                txn.commit().await.map_err(retry)?;
                if event.topic == outbox_event::TOPIC_ACCOUNT_DELETED {
                    tracing::info!(event_id = %event.id, "applied an account deletion from the event stream");
                }
                self.invalidations.invalidate(changed).await;
                Ok(())
            }
            Applied::Unreadable(cause) => Err(HandleError::Poison(cause)),
        }
    }
}
