//! Access tokens that stop working before they expire. An access token is checked only
//! against keys and its own expiry, so on its own it outlives a logout, a password change
//! that ends other sessions, a stolen refresh token's family, or the account itself.
//!
//! The users subgraph writes a row to `revocations` in the transaction that ends the
//! session or deletes the account (`record`). Every process that accepts tokens keeps the
//! live rows in memory ([`Revocations`], checked by [`crate::jwt::TokenVerifier`]): in
//! the process that wrote them at once, elsewhere within [`POLL_EVERY`] through
//! [`follow`], which asks a [`RevocationSource`] for the rows after the last `seq` it saw
//! (the database itself, or the users subgraph's `/revocations` endpoint for a gateway
//! that has no database). Revocations are rare, so the set stays small and the check is a
//! hash lookup; a row drops out once every token issued before it has expired.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

/// How often a process asks for revocations written elsewhere.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// The most rows one request for revocations returns; a reader asks again at once for more.
pub const PAGE: u64 = 500;

/// What stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ended {
    /// Every token of one session (refresh-token family).
    Session(Uuid),
    /// Every token of a deleted account.
    Account(Uuid),
}

/// One revocation as readers see it. Only a session's id is given for an ended session
/// (not whose it was), and an account's id only once the account is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Commit order: readers ask for the rows after the last one they saw.
    pub seq: i64,
    pub ended: Ended,
    /// Unix seconds after which every token it refuses has expired anyway.
    pub expires_at: i64,
}

/// The revocations this process knows of, shared by all its token verifiers.
#[derive(Debug, Clone, Default)]
pub struct Revocations(Arc<RwLock<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// What ended, and until when it matters (unix seconds).
    ended: HashMap<Ended, i64>,
    /// The highest `seq` seen.
    cursor: i64,
}

impl Revocations {
    /// Takes in revocations (from this process or read from elsewhere), forgetting those
    /// whose tokens have all expired.
    pub fn add(&self, revocations: &[Revocation]) {
        let now = Utc::now().timestamp();
        let mut known = self.0.write().unwrap_or_else(PoisonError::into_inner);
        known.ended.retain(|_, until| *until > now);
        for revocation in revocations {
            known.cursor = known.cursor.max(revocation.seq);
            if revocation.expires_at > now {
                let until = known.ended.entry(revocation.ended).or_insert(0);
                *until = (*until).max(revocation.expires_at);
            }
        }
    }

    /// Whether a token of `user_id` in session `session_id` was revoked.
    pub fn refuses(&self, user_id: Uuid, session_id: Uuid) -> bool {
        let known = self.0.read().unwrap_or_else(PoisonError::into_inner);
        !known.ended.is_empty()
            && (known.ended.contains_key(&Ended::Session(session_id))
                || known.ended.contains_key(&Ended::Account(user_id)))
    }

    /// The highest `seq` taken in.
    pub fn cursor(&self) -> i64 {
        self.0.read().unwrap_or_else(PoisonError::into_inner).cursor
    }
}

/// Why revocations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("reading revocations from the database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("asking {url} for revocations: {cause}")]
    Remote { url: String, cause: String },
}

/// Where revocations written by other processes are read from.
pub trait RevocationSource: Send + Sync + 'static {
    /// The live revocations after `cursor`, in `seq` order, at most [`PAGE`].
    fn after(
        &self,
        cursor: i64,
    ) -> impl Future<Output = Result<Vec<Revocation>, RevocationError>> + Send;
}

/// Keeps `revocations` up to date from `source` every [`POLL_EVERY`] until `stop` turns
/// true. A source that fails is retried at the next poll; the failure is logged once, and
/// so is the recovery.
pub async fn follow(
    revocations: Revocations,
    source: impl RevocationSource,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        match catch_up(&revocations, &source).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("revocations can be read again");
            }
            Ok(()) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "cannot read revocations; retrying every second");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Reads every revocation after the ones already known.
async fn catch_up(
    revocations: &Revocations,
    source: &impl RevocationSource,
) -> Result<(), RevocationError> {
    loop {
        let page = source.after(revocations.cursor()).await?;
        revocations.add(&page);
        if (page.len() as u64) < PAGE {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(seq: i64, ended: Ended, expires_in: i64) -> Revocation {
        Revocation {
            seq,
            ended,
            expires_at: Utc::now().timestamp() + expires_in,
        }
    }

    #[test]
    fn an_ended_session_refuses_its_tokens_and_no_other_sessions() {
        let (user, ended, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let revocations = Revocations::default();
        revocations.add(&[revocation(1, Ended::Session(ended), 900)]);
        assert!(revocations.refuses(user, ended));
        assert!(!revocations.refuses(user, other));
        assert_eq!(revocations.cursor(), 1);
    }

    #[test]
    fn a_deleted_account_refuses_every_session() {
        let user = Uuid::now_v7();
        let revocations = Revocations::default();
        revocations.add(&[revocation(7, Ended::Account(user), 900)]);
        assert!(revocations.refuses(user, Uuid::now_v7()));
        assert!(!revocations.refuses(Uuid::now_v7(), Uuid::now_v7()));
    }

    #[test]
    fn a_revocation_is_forgotten_once_every_token_before_it_has_expired() {
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let revocations = Revocations::default();
        revocations.add(&[revocation(3, Ended::Session(session), -1)]);
        assert!(!revocations.refuses(user, session));
        assert_eq!(revocations.cursor(), 3, "seen, so not asked for again");
    }
}
