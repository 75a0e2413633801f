//! Which accounts exist, as far as the posts subgraph can tell without reading the users
//! subgraph's tables: `known_accounts`, filled from account-created events (and the
//! migration's copy of earlier accounts), with a tombstone once an account is deleted.
//!
//! A write for an account and the removal of that account's content must not overlap: a
//! post committed while the account-deletion consumer runs would outlive it as a ghost
//! row. So both sides take the account's lock in their transaction: a PostgreSQL
//! transaction-level advisory lock per account (SQLite's write lock, which `begin_write`
//! takes, already covers every write). The consumer writes the tombstone under it before
//! removing rows; a write checks the tombstone under it before writing.

use chrono::Utc;
use gantry_entities::{known_account, outbox_event, outbox_offset};
use gantry_kit::ApiError;
use gantry_kit::error::ApiResult;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::consumer::CONSUMER;

/// The class of the two-key advisory locks on accounts (`acct`), apart from the
/// single-key migration lock and the revocation order lock.
const ACCOUNT_LOCK_CLASS: i32 = 0x6163_6374;

/// How many not yet consumed account-created events a follow of an unknown account reads.
const CATCH_UP_EVENTS: u64 = 1000;

/// The 32-bit lock key of an account; two accounts sharing one only wait for each other.
fn lock_key(id: Uuid) -> i32 {
    let bits = id.as_u128();
    let folded =
        (bits as u32) ^ ((bits >> 32) as u32) ^ ((bits >> 64) as u32) ^ ((bits >> 96) as u32);
    folded as i32
}

/// Takes the locks of `accounts` until the transaction ends (in key order, so two
/// transactions locking the same pair cannot deadlock). Nothing to take on SQLite.
pub(crate) async fn lock<C: ConnectionTrait>(txn: &C, accounts: &[Uuid]) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut keys: Vec<i32> = accounts.iter().copied().map(lock_key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({ACCOUNT_LOCK_CLASS}, {key})"),
        ))
        .await?;
    }
    Ok(())
}

/// Refuses a write by an account that was deleted (`UNAUTHENTICATED`, as its token is).
/// Call it under [`lock`]. An account not known yet is one whose created event is still
/// on its way: its token proves it existed.
pub(crate) async fn ensure_not_deleted<C: ConnectionTrait>(
    txn: &C,
    user_id: Uuid,
) -> ApiResult<()> {
    let row = known_account::Entity::find_by_id(user_id).one(txn).await?;
    if row.is_some_and(|row| row.deleted_at.is_some()) {
        return Err(ApiError::unauthenticated("the account no longer exists"));
    }
    Ok(())
}

/// `NOT_FOUND` unless `user_id` is an account that exists. Call it under [`lock`]. An
/// account this side has not heard of yet may have been created a moment ago: the
/// account-created events not consumed yet are read first.
pub(crate) async fn ensure_exists<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> ApiResult<()> {
    let mut row = known_account::Entity::find_by_id(user_id).one(txn).await?;
    if row.is_none() {
        learn_created(txn).await?;
        row = known_account::Entity::find_by_id(user_id).one(txn).await?;
    }
    match row {
        Some(row) if row.deleted_at.is_none() => Ok(()),
        _ => Err(ApiError::not_found("no user has that id")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountCreated {
    user_id: Uuid,
}

/// Records an account from its created event (once; a tombstone stays a tombstone).
pub(crate) async fn remember<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> Result<(), DbErr> {
    known_account::Entity::insert(known_account::ActiveModel {
        user_id: Set(user_id),
        deleted_at: Set(None),
    })
    .on_conflict(
        OnConflict::column(known_account::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Leaves the tombstone of a deleted account. Call it under [`lock`].
pub(crate) async fn bury<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> Result<(), DbErr> {
    known_account::Entity::insert(known_account::ActiveModel {
        user_id: Set(user_id),
        deleted_at: Set(Some(Utc::now())),
    })
    .on_conflict(
        OnConflict::column(known_account::Column::UserId)
            .update_column(known_account::Column::DeletedAt)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Applies the account-created events the consumer has not reached yet (it applies them
/// again later, which changes nothing), when the users subgraph's outbox is in this
/// database. A posts database of its own learns of accounts from the event stream only.
async fn learn_created<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    if !has_outbox(txn).await? {
        return Ok(());
    }
    let offset = outbox_offset::Entity::find_by_id(CONSUMER.to_owned())
        .one(txn)
        .await?;
    let mut events = outbox_event::Entity::find()
        .filter(outbox_event::Column::Topic.eq(outbox_event::TOPIC_ACCOUNT_CREATED))
        .order_by_asc(outbox_event::Column::Id)
        .limit(CATCH_UP_EVENTS);
    if let Some(offset) = offset {
        events = events.filter(outbox_event::Column::Id.gt(offset.last_event_id));
    }
    for event in events.all(txn).await? {
        if let Ok(created) = serde_json::from_str::<AccountCreated>(&event.payload) {
            remember(txn, created.user_id).await?;
        }
    }
    Ok(())
}

/// Whether the users subgraph's `outbox_events` table is in this database.
async fn has_outbox<C: ConnectionTrait>(txn: &C) -> Result<bool, DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT to_regclass('outbox_events') IS NOT NULL AS found",
        _ => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox_events') AS found"
        }
    };
    let row = txn
        .query_one_raw(Statement::from_string(backend, sql))
        .await?;
    Ok(row
        .map(|row| row.try_get::<bool>("", "found"))
        .transpose()?
        .unwrap_or(false))
}

/// The account an account-created event names, if it can be read.
pub(crate) fn created_account(payload: &str) -> Option<Uuid> {
    serde_json::from_str::<AccountCreated>(payload)
        .ok()
        .map(|created| created.user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_fold_the_whole_id() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(1 << 96);
        assert_eq!(lock_key(a), lock_key(b), "folded from every 32 bits");
        assert_ne!(lock_key(a), lock_key(Uuid::from_u128(2)));
    }
}
