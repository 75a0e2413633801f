//! Sessions and refresh tokens. A session is a refresh-token family: every
//! `refreshSession` retires the presented token and issues the next one in the same
//! family. A retired token presented again means it was stolen or replayed, so the whole
//! family is revoked.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use gantry_entities::{refresh_token, session};
use gantry_kit::ApiError;
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A refresh token as the client holds it. Never stored: only its SHA-256 is.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl RefreshToken {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("grt_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn from_client(token: &str) -> Self {
        Self(token.trim().to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

/// Why a session ended, as stored in `sessions.revoked_reason`.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    Logout,
    LogoutEverywhere,
    PasswordChanged,
    TokenReuse,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::PasswordChanged => "password_changed",
            Self::TokenReuse => "token_reuse",
        }
    }
}

/// Starts a new family for `user_id` and returns its id and first token.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    lifetime: chrono::Duration,
) -> Result<(Uuid, RefreshToken), ApiError> {
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    session::Entity::insert(session::ActiveModel {
        id: Set(session_id),
        user_id: Set(user_id),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(now + lifetime),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    let token = issue(db, session_id, now).await?;
    Ok((session_id, token))
}

async fn issue<C: ConnectionTrait>(
    db: &C,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<RefreshToken, ApiError> {
    let token = RefreshToken::generate();
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session_id),
        token_hash: Set(token.hash()),
        created_at: Set(now),
        rotated_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: here is the next one.
    Rotated {
        user_id: Uuid,
        session_id: Uuid,
        token: RefreshToken,
    },
    /// Unknown token, or its session is revoked or expired.
    Invalid,
    /// The token had already been rotated: its family is now revoked.
    Reused { user_id: Uuid, session_id: Uuid },
}

/// Exchanges `presented` for the next token of its family. Run it in a transaction.
pub async fn rotate<C: ConnectionTrait>(
    db: &C,
    presented: &RefreshToken,
) -> Result<Rotation, ApiError> {
    let Some(row) = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(presented.hash()))
        .one(db)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    let Some(family) = session::Entity::find_by_id(row.session_id).one(db).await? else {
        return Ok(Rotation::Invalid);
    };
    let now = Utc::now();
    if family.revoked_at.is_some() || family.expires_at <= now {
        return Ok(Rotation::Invalid);
    }
    // Claim the token: only one caller can move rotated_at from NULL, so two concurrent
    // uses of one token count as reuse.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(row.id))
        .filter(refresh_token::Column::RotatedAt.is_null())
        .exec(db)
        .await?;
    if row.rotated_at.is_some() || claimed.rows_affected == 0 {
        revoke(db, family.id, RevokeReason::TokenReuse).await?;
        return Ok(Rotation::Reused {
            user_id: family.user_id,
            session_id: family.id,
        });
    }
    session::Entity::update_many()
        .col_expr(session::Column::LastUsedAt, Expr::value(now))
        .filter(session::Column::Id.eq(family.id))
        .exec(db)
        .await?;
    let token = issue(db, family.id, now).await?;
    Ok(Rotation::Rotated {
        user_id: family.user_id,
        session_id: family.id,
        token,
    })
}

/// Finds the live session a refresh token belongs to.
pub async fn session_of<C: ConnectionTrait>(
    db: &C,
    presented: &RefreshToken,
) -> Result<Option<session::Model>, ApiError> {
    let Some(row) = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(presented.hash()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(session::Entity::find_by_id(row.session_id).one(db).await?)
}

/// Revokes one family; `false` when it was already revoked.
pub async fn revoke<C: ConnectionTrait>(
    db: &C,
    session_id: Uuid,
    reason: RevokeReason,
) -> Result<bool, ApiError> {
    let ended = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason.as_str()))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(ended.rows_affected > 0)
}

/// Revokes every live family of `user_id` except `keep`; returns the ones that ended.
/// Run it in a write transaction, so no family starts between the read and the update.
pub async fn revoke_all<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
) -> Result<Vec<Uuid>, ApiError> {
    let mut live = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        live = live.filter(session::Column::Id.ne(keep));
    }
    let ended: Vec<Uuid> = live.into_tuple().all(db).await?;
    if ended.is_empty() {
        return Ok(ended);
    }
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason.as_str()))
        .filter(session::Column::Id.is_in(ended.iter().copied()))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_hash_to_hex() {
        let (a, b) = (RefreshToken::generate(), RefreshToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.hash().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
