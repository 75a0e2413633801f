//! The revocations table: written by the users subgraph in the transaction that ends a
//! session or deletes an account ([`record`]), read by every process on the database
//! ([`DatabaseRevocations`], [`after`]). What a revocation is, and how a process follows
//! them, is database-free (see [`crate::revocation`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_entities::revocation;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::revocation::{Ended, PAGE, Revocation, RevocationError, RevocationSource};

/// A row as readers see it.
fn revocation_of(row: revocation::Model) -> Revocation {
    Revocation {
        seq: row.seq,
        ended: match row.session_id {
            Some(session) => Ended::Session(session),
            None => Ended::Account(row.user_id),
        },
        expires_at: row.expires_at.timestamp(),
    }
}

/// Reads revocations straight from the database (subgraphs and the all-in-one server).
#[derive(Debug, Clone)]
pub struct DatabaseRevocations(pub DatabaseConnection);

impl RevocationSource for DatabaseRevocations {
    async fn after(&self, cursor: i64) -> Result<Vec<Revocation>, RevocationError> {
        after(&self.0, cursor)
            .await
            .map_err(|err| RevocationError::Database(Box::new(err)))
    }
}

/// The live revocations after `cursor`, in `seq` order, at most [`PAGE`].
pub async fn after<C: ConnectionTrait>(db: &C, cursor: i64) -> Result<Vec<Revocation>, DbErr> {
    Ok(revocation::Entity::find()
        .filter(revocation::Column::Seq.gt(cursor))
        .filter(revocation::Column::ExpiresAt.gt(Utc::now()))
        .order_by_asc(revocation::Column::Seq)
        .limit(PAGE)
        .all(db)
        .await?
        .into_iter()
        .map(revocation_of)
        .collect())
}

/// The PostgreSQL advisory lock (two-key form, apart from the single-key migration lock)
/// that writers of revocations take, so that `seq` order is commit order: without it, a
/// transaction that drew a lower `seq` could commit after a reader had moved past it.
const ORDER_LOCK: (i32, i32) = (0x7265_766b, 0);

/// Records, in the caller's transaction, that `ended` (all of `user_id`) stopped working;
/// tokens issued until now live at most `token_lifetime` (with leeway) longer. Commit, then
/// hand the result to this process's [`Revocations`]. On PostgreSQL the transaction holds
/// the order lock from here to its commit; on SQLite `begin_write` already serialises it.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    ended: &[Ended],
    token_lifetime: Duration,
) -> Result<Vec<Revocation>, DbErr> {
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT pg_advisory_xact_lock({}, {})",
                ORDER_LOCK.0, ORDER_LOCK.1
            ),
        ))
        .await?;
    }
    let now = Utc::now();
    revocation::Entity::delete_many()
        .filter(revocation::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    let expires_at = expiry(now, token_lifetime);
    let mut recorded = Vec::with_capacity(ended.len());
    for ended in ended {
        let session_id = match ended {
            Ended::Session(session) => Some(*session),
            Ended::Account(_) => None,
        };
        let inserted = revocation::Entity::insert(revocation::ActiveModel {
            seq: NotSet,
            user_id: Set(user_id),
            session_id: Set(session_id),
            created_at: Set(now),
            expires_at: Set(expires_at),
        })
        .exec(db)
        .await?;
        recorded.push(Revocation {
            seq: inserted.last_insert_id,
            ended: *ended,
            expires_at: expires_at.timestamp(),
        });
    }
    Ok(recorded)
}

/// When the last token issued by `now` expires, with the verifiers' leeway.
fn expiry(now: DateTime<Utc>, token_lifetime: Duration) -> DateTime<Utc> {
    let lifetime = chrono::Duration::from_std(token_lifetime).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(lifetime)
        .and_then(|at| at.checked_add_signed(chrono::Duration::seconds(crate::jwt::LEEWAY_SECS)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
