//! Accounts coming and going, as seen from the posts side. The users subgraph writes a
//! `user.account_created` event to its outbox in the transaction that creates an account,
//! and `user.account_deleted` in the one that deletes it; this consumer reads the outbox
//! in id order from its stored offset. A created account becomes known (so it can be
//! followed). A deleted one gets a tombstone under the account's lock
//! (the `accounts` module), so no write for it can commit afterwards, and loses its
//! posts (with their comments and likes), comments, likes and follows, also those written
//! after the deletion but before this ran; the offset moves in the same transaction.
//! Delivery is at least once; handling is idempotent; events written while this subgraph
//! is down are handled when it comes back, and events committed just after later ones are
//! found by a look behind the offset. Once a deletion is committed, the ids whose data it
//! changed (the user, their posts, the posts they liked or commented on, the accounts they
//! followed or were followed by) go to [`Invalidations`], so cached responses showing
//! stale counts are dropped at once rather than at their TTL.
//!
//! `user.profile_updated` (a display name or bio changed) changes nothing here: the posts
//! database keeps no copy of a profile, only account ids. Its account's id goes to
//! [`Invalidations`], so responses and entities cached with the old name are dropped also
//! when the change reached no gateway. The event names the account only, so handling it
//! again, or late, drops at most entries that are then read afresh. Late ones (behind the
//! offset) are found by the same look behind it, which handles each once per process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use gantry_entities::{comment, follow, known_account, like, outbox_event, outbox_offset, post};
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

use crate::accounts;

/// This consumer's name in `outbox_offsets` (kept from when it read deletions only).
pub const CONSUMER: &str = "posts.account_deleted";
const BATCH: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDeleted {
    user_id: Uuid,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileUpdated {
    user_id: Uuid,
}

/// The account a `user.profile_updated` payload names, or why it cannot be read.
pub(crate) fn updated_profile(payload: &str) -> Result<Uuid, String> {
    serde_json::from_str::<ProfileUpdated>(payload)
        .map(|updated| updated.user_id)
        .map_err(|err| format!("a {} payload: {err}", outbox_event::TOPIC_PROFILE_UPDATED))
}

#[derive(Debug, Clone)]
pub struct AccountDeletionConsumer {
    db: DatabaseConnection,
    poll_interval: Duration,
    signal: Option<OutboxSignal>,
    invalidations: Invalidations,
    /// Profile events handled in the last [`LOOKBACK`] behind the offset, so the look
    /// behind it handles a late one once (they leave nothing in the database to check).
    profiles_seen: Arc<Mutex<BTreeSet<Uuid>>>,
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
            profiles_seen: Arc::default(),
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
            if gantry_kit::outbox::pause(wait, self.signal.as_ref(), &mut stop).await {
                tracing::info!("account-deletion consumer stopped");
                return;
            }
        }
    }

    /// Handles every pending event; returns how many.
    pub async fn drain(&self) -> Result<usize, DbErr> {
        self.sweep().await?;
        let mut handled = 0;
        loop {
            let n = self.handle_batch().await?;
            handled += n;
            if n < BATCH as usize {
                return Ok(handled);
            }
        }
    }

    async fn offset(&self) -> Result<Option<Uuid>, DbErr> {
        Ok(outbox_offset::Entity::find_by_id(CONSUMER.to_owned())
            .one(&self.db)
            .await?
            .map(|offset| offset.last_event_id))
    }

    async fn handle_batch(&self) -> Result<usize, DbErr> {
        let mut events = outbox_event::Entity::find()
            .filter(outbox_event::Column::Topic.is_in(TOPICS))
            .order_by_asc(outbox_event::Column::Id)
            .limit(BATCH);
        if let Some(offset) = self.offset().await? {
            events = events.filter(outbox_event::Column::Id.gt(offset));
        }
        let events = events.all(&self.db).await?;
        for event in &events {
            self.handle(event, true).await?;
        }
        Ok(events.len())
    }

    /// Handles the events just behind the offset that were committed after it moved past
    /// them. Event ids are drawn before their transaction commits (and by replicas whose
    /// clocks differ a little), so one can become visible after a later one was handled;
    /// the offset alone would skip it for good. Those of the last [`LOOKBACK`] whose effect
    /// is missing (an account not known, a deleted account without its tombstone) are
    /// handled now, without moving the offset.
    async fn sweep(&self) -> Result<(), DbErr> {
        let Some(offset) = self.offset().await? else {
            return Ok(());
        };
        let events = outbox_event::Entity::find()
            .filter(outbox_event::Column::Topic.is_in(TOPICS))
            .filter(outbox_event::Column::Id.gt(lookback_floor(offset)))
            .filter(outbox_event::Column::Id.lte(offset))
            .order_by_desc(outbox_event::Column::Id)
            .limit(SWEEP)
            .all(&self.db)
            .await?;
        let named: Vec<(Uuid, &outbox_event::Model)> = events
            .iter()
            .filter_map(|event| Some((account_of(event)?, event)))
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        let known: HashMap<Uuid, bool> = known_account::Entity::find()
            .filter(known_account::Column::UserId.is_in(named.iter().map(|(id, _)| *id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.user_id, row.deleted_at.is_some()))
            .collect();
        self.forget_profiles_before(lookback_floor(offset));
        for (user_id, event) in named.into_iter().rev() {
            let missing = if event.topic == outbox_event::TOPIC_PROFILE_UPDATED {
                !self.profile_seen(event.id)
            } else {
                match known.get(&user_id) {
                    None => true,
                    Some(deleted) => event.topic == outbox_event::TOPIC_ACCOUNT_DELETED && !deleted,
                }
            };
            if missing {
                tracing::info!(event_id = %event.id, topic = %event.topic, "handling an event committed after later ones");
                self.handle(event, false).await?;
            }
        }
        Ok(())
    }

    /// Applies one event and, when `advance`, moves the offset past it, in one
    /// transaction; then reports the ids whose data changed.
    async fn handle(&self, event: &outbox_event::Model, advance: bool) -> Result<(), DbErr> {
        let txn = begin_write(&self.db).await?;
        let changed = match apply(&txn, &event.topic, &event.payload).await? {
            Applied::Changed(changed) => changed,
            // A payload this version cannot read is skipped, loudly, rather than blocking
            // every later event.
            Applied::Unreadable(cause) => {
                tracing::error!(event_id = %event.id, topic = %event.topic, error = %cause, "unreadable account event skipped");
                Vec::new()
            }
        };
        if advance {
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
        }
        txn.commit().await?;
        if event.topic == outbox_event::TOPIC_PROFILE_UPDATED {
            self.remember_profile(event.id);
        }
        self.invalidations.invalidate(changed).await;
        Ok(())
    }

    fn profile_seen(&self, event: Uuid) -> bool {
        self.profiles_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&event)
    }

    fn remember_profile(&self, event: Uuid) {
        self.profiles_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(event);
    }

    /// Drops the profile events the look behind the offset no longer reaches.
    fn forget_profiles_before(&self, floor: Uuid) {
        let mut seen = self
            .profiles_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *seen = seen.split_off(&floor);
    }
}

/// The topics this consumer reads.
pub(crate) const TOPICS: [&str; 3] = [
    outbox_event::TOPIC_ACCOUNT_CREATED,
    outbox_event::TOPIC_ACCOUNT_DELETED,
    outbox_event::TOPIC_PROFILE_UPDATED,
];

/// How far behind the offset each poll looks for late events: far longer than
/// any account transaction stays open or replicas' clocks drift apart.
pub const LOOKBACK: Duration = Duration::from_secs(30);

/// At most this many events behind the offset are checked per poll.
const SWEEP: u64 = 1000;

/// The smallest UUIDv7 of the millisecond [`LOOKBACK`] before `offset`'s.
fn lookback_floor(offset: Uuid) -> Uuid {
    let millis = offset
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs.saturating_mul(1000) + u64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
        .saturating_sub(LOOKBACK.as_millis() as u64);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

/// The account an event is about, if its payload can be read.
fn account_of(event: &outbox_event::Model) -> Option<Uuid> {
    if event.topic == outbox_event::TOPIC_ACCOUNT_CREATED {
        accounts::created_account(&event.payload)
    } else if event.topic == outbox_event::TOPIC_PROFILE_UPDATED {
        updated_profile(&event.payload).ok()
    } else {
        serde_json::from_str::<AccountDeleted>(&event.payload)
            .ok()
            .map(|deleted| deleted.user_id)
    }
}

/// What applying one event did.
#[derive(Debug)]
pub(crate) enum Applied {
    /// Applied (or found applied already); the ids whose cached data it changed.
    Changed(Vec<Uuid>),
    /// Its payload cannot be read by this version; nothing was changed.
    Unreadable(String),
}

/// What one account event changes, in `txn`. Applying it again changes nothing more.
pub(crate) async fn apply(
    txn: &sea_orm::DatabaseTransaction,
    topic: &str,
    payload: &str,
) -> Result<Applied, DbErr> {
    if topic == outbox_event::TOPIC_PROFILE_UPDATED {
        // Nothing here holds a profile: only what is cached about the account changes.
        return Ok(match updated_profile(payload) {
            Ok(user_id) => Applied::Changed(vec![user_id]),
            Err(cause) => Applied::Unreadable(cause),
        });
    }
    if topic == outbox_event::TOPIC_ACCOUNT_CREATED {
        return Ok(match accounts::created_account(payload) {
            Some(user_id) => {
                accounts::remember(txn, user_id).await?;
                Applied::Changed(Vec::new())
            }
            None => Applied::Unreadable(format!("a {topic} payload without a userId")),
        });
    }
    let user_id = match serde_json::from_str::<AccountDeleted>(payload) {
        Ok(AccountDeleted { user_id }) => user_id,
        Err(err) => return Ok(Applied::Unreadable(format!("a {topic} payload: {err}"))),
    };
    accounts::lock(txn, &[user_id]).await?;
    accounts::bury(txn, user_id).await?;
    let changed = affected_ids(txn, user_id).await?;
    crate::timelines::account_deleted(txn, user_id).await?;
    let posts = post::Entity::delete_many()
        .filter(post::Column::AuthorId.eq(user_id))
        .exec(txn)
        .await?;
    let comments = comment::Entity::delete_many()
        .filter(comment::Column::AuthorId.eq(user_id))
        .exec(txn)
        .await?;
    let likes = like::Entity::delete_many()
        .filter(like::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    let follows = follow::Entity::delete_many()
        .filter(
            Condition::any()
                .add(follow::Column::FollowerId.eq(user_id))
                .add(follow::Column::FolloweeId.eq(user_id)),
        )
        .exec(txn)
        .await?;
    tracing::info!(
        %user_id,
        posts = posts.rows_affected,
        comments = comments.rows_affected,
        likes = likes.rows_affected,
        follows = follows.rows_affected,
        "removed a deleted account's content"
    );
    Ok(Applied::Changed(changed))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookback_floor_is_the_first_id_of_the_millisecond_thirty_seconds_earlier() {
        let offset = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_000_000, 0));
        let floor = lookback_floor(offset);
        let (secs, nanos) = floor.get_timestamp().expect("a v7 id").to_unix();
        assert_eq!((secs, nanos), (1_000_000 - 30, 0));
        let earlier = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 999_970, 0));
        assert!(floor <= earlier && earlier < offset);
        assert!(
            Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                999_969,
                999_000_000
            )) < floor
        );
    }
}
