//! The users subgraph's live events, written to `user_live_events` in the transaction of
//! the write they tell of (see [`gantry_kit::live`]), and the `Subscription` root they
//! feed:
//!
//! - `profileUpdated(userId: ID!): User!` — the account, each time its profile (display
//!   name, bio) changes; `NOT_FOUND` for an account that does not exist, `BAD_USER_INPUT`
//!   for a malformed id. The event carries only the id (`{"userId"}`); the account is
//!   read when the event arrives, through the loader every subscription shares, so its
//!   private fields never travel through the event channel.

use async_graphql::{Context, ID, Result, Subscription as SubscriptionRoot};
use futures::{Stream, StreamExt};
use gantry_kit::ApiError;
use gantry_kit::live::outbox::record;
use gantry_kit::live::{LiveBus, SubscriptionLimits};
use gantry_kit::reads::ReadFrom;
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::loader::UserLoaders;
use crate::schema::User;

/// The table this subgraph's live events are written to.
pub const TABLE: &str = "user_live_events";

/// This subgraph's name on the live-event channel (`{prefix}live:users`).
pub const SUBGRAPH: &str = "users";

pub const TOPIC_PROFILE_UPDATED: &str = "user.profile_updated";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileUpdated {
    user_id: Uuid,
}

/// Records that `user_id`'s profile changed, on the transaction that changed it.
pub async fn profile_updated<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> Result<(), DbErr> {
    let payload = serde_json::to_value(ProfileUpdated { user_id })
        .map_err(|err| DbErr::Custom(format!("a live event: {err}")))?;
    record(txn, TABLE, TOPIC_PROFILE_UPDATED, &payload).await
}

fn updated_user(payload: &str) -> Option<Uuid> {
    let ProfileUpdated { user_id } = serde_json::from_str(payload).ok()?;
    Some(user_id)
}

#[derive(Debug, Default)]
pub struct Subscription;

#[SubscriptionRoot]
impl Subscription {
    /// The account `userId` each time its profile changes.
    async fn profile_updated(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> Result<impl Stream<Item = User> + use<>> {
        let user_id = Uuid::parse_str(user_id.as_str())
            .map_err(|_| ApiError::bad_input("userId", "`userId` is not a valid user id"))?;
        let permit = ctx
            .data_unchecked::<SubscriptionLimits>()
            .acquire_for(ctx)?;
        // An event follows a commit the replica may not have yet: read the primary.
        let loader = ctx
            .data_unchecked::<UserLoaders>()
            .of(ReadFrom::Primary)
            .clone();
        if loader.load_one(user_id).await?.is_none() {
            return Err(ApiError::not_found("no account has that id").into());
        }
        let users = ctx
            .data_unchecked::<LiveBus>()
            .topic(TOPIC_PROFILE_UPDATED)
            .filter_map(move |event| {
                let loader = loader.clone();
                async move {
                    if updated_user(&event.payload)? != user_id {
                        return None;
                    }
                    loader.load_one(user_id).await.ok()?.map(User::new)
                }
            })
            .map(move |user| {
                let _held = &permit;
                user
            });
        Ok(users)
    }
}
