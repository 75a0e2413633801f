//! The account service: every operation of the users subgraph, over SeaORM. Resolvers
//! parse nothing and decide nothing; they call in here.
//!
//! Reads and the read replica (`DATABASE_READ_URL`, see [`gantry_kit::reads`]): public
//! profile lookups ([`UsersService::profile`], [`UsersService::profiles`],
//! [`UsersService::profile_by_username`]) read where the request was routed, the replica
//! unless the request writes or its viewer wrote lately. Sign-in, registration checks,
//! sessions, tokens, revocations and account management read the primary: they must see
//! the latest password, session and account.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::Utc;
use gantry_entities::{outbox_event, user};
use gantry_kit::db::begin_write;
use gantry_kit::error::{ApiResult, on_unique_violation};
use gantry_kit::jwt::TokenSigner;
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::reads::{ReadFrom, ReadRouting};
use gantry_kit::revocation::{self, Ended, Revocation, Revocations};
use gantry_kit::text::{Lines, refuse_control_characters};
use gantry_kit::{ApiError, Viewer};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter,
};
use uuid::Uuid;

use crate::domain::{Bio, DisplayName, Email, Password, Username};
use crate::password;
use crate::sessions::{self, RefreshToken, RevokeReason, Rotation};
use crate::throttle::{Attempt, LoginThrottle, MAX_LOGIN_BYTES};

/// What a successful sign-in hands the client.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub access_token: String,
    pub refresh_token: RefreshToken,
    pub expires_in: u64,
    pub user: user::Model,
}

/// Writes an outbox event in the caller's transaction.
async fn write_event<C: ConnectionTrait>(
    txn: &C,
    topic: &str,
    payload: serde_json::Value,
) -> Result<(), DbErr> {
    outbox_event::Entity::insert(outbox_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        topic: Set(topic.to_owned()),
        payload: Set(payload.to_string()),
        created_at: Set(Utc::now()),
        published_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

async fn by_id(db: &DatabaseConnection, id: Uuid) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).one(db).await
}

async fn by_username(
    db: &DatabaseConnection,
    username: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username.trim().to_lowercase()))
        .one(db)
        .await
}

async fn by_ids(db: &DatabaseConnection, ids: &[Uuid]) -> Result<Vec<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

/// Raw registration input, as the client sent it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
    pub display_name: String,
}

/// How long a session lives at most, however often it is refreshed. Default 30 days.
pub const DEFAULT_SESSION_LIFETIME: chrono::Duration = chrono::Duration::days(30);

#[derive(Debug)]
pub struct UsersService {
    /// The primary: writes, and the reads that must be current.
    db: DatabaseConnection,
    reads: ReadRouting,
    signer: TokenSigner,
    throttle: LoginThrottle,
    session_lifetime: chrono::Duration,
    /// Rung after an event is committed, for consumers in this process.
    outbox_signal: Option<OutboxSignal>,
    /// This process's revocations, told at once of the ones written here.
    revocations: Revocations,
    /// Rung after a write with a live event commits (the live-event relay waits on it).
    live_signal: OutboxSignal,
}

impl UsersService {
    /// Public profile reads routed by `reads`; everything else on its primary.
    pub fn new(
        reads: ReadRouting,
        signer: TokenSigner,
        throttle: LoginThrottle,
        outbox_signal: Option<OutboxSignal>,
        revocations: Revocations,
    ) -> Self {
        Self {
            db: reads.primary().clone(),
            reads,
            signer,
            throttle,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            outbox_signal,
            revocations,
            live_signal: OutboxSignal::default(),
        }
    }

    /// The bell the live-event relay waits on.
    pub fn with_live_signal(mut self, signal: OutboxSignal) -> Self {
        self.live_signal = signal;
        self
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn reads(&self) -> &ReadRouting {
        &self.reads
    }

    /// The primary, for a read outside a write transaction that must be current (counted
    /// as such in `gantry_database_reads_total`).
    fn current(&self) -> &DatabaseConnection {
        self.reads.connection(ReadFrom::Primary)
    }

    #[tracing::instrument(skip_all, fields(username = %input.username))]
    pub async fn register(&self, input: Registration) -> ApiResult<SignedIn> {
        let username = Username::parse(&input.username)?;
        let email = Email::parse(&input.email)?;
        let display_name = DisplayName::parse(&input.display_name)?;
        let password = Password::parse(
            &input.password,
            "password",
            &[username.as_str(), email.as_str(), display_name.as_str()],
        )?;
        if self.find_by_username(username.as_str()).await?.is_some() {
            return Err(ApiError::conflict("username", "that username is taken"));
        }
        if self.find_by_email(email.as_str()).await?.is_some() {
            return Err(ApiError::conflict(
                "email",
                "an account with that email exists",
            ));
        }
        let password_hash = password::hash(&password).await?;
        let now = Utc::now();
        let model = user::Model {
            id: Uuid::now_v7(),
            username: username.as_str().to_owned(),
            email: email.as_str().to_owned(),
            display_name: display_name.into_inner(),
            bio: String::new(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let txn = begin_write(&self.db).await?;
        user::Entity::insert(user::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(|err| {
                on_unique_violation(err, |detail| {
                    if detail.contains("username") {
                        ApiError::conflict("username", "that username is taken")
                    } else {
                        ApiError::conflict("email", "an account with that email exists")
                    }
                })
            })?;
        let (session_id, refresh_token) =
            sessions::start(&txn, model.id, self.session_lifetime).await?;
        write_event(
            &txn,
            outbox_event::TOPIC_ACCOUNT_CREATED,
            serde_json::json!({ "userId": model.id, "createdAt": now }),
        )
        .await?;
        txn.commit().await?;
        self.ring_outbox();
        // The new account's first requests carry its new token: they read the primary for
        // a while, as any writer's do, so `me` finds the account at once.
        self.reads.wrote(model.id).await;
        tracing::info!(user_id = %model.id, "account registered");
        self.signed_in(model, session_id, refresh_token)
    }

    /// Signs in by username or email. Unknown account and wrong password give the same
    /// answer, after the same work.
    #[tracing::instrument(skip_all, fields(client = %addr))]
    pub async fn login(&self, login: &str, password: &str, addr: IpAddr) -> ApiResult<SignedIn> {
        refuse_control_characters(login, "login", "a login", Lines::Refused)?;
        let login = login.trim();
        if login.len() > MAX_LOGIN_BYTES {
            return Err(ApiError::bad_input(
                "login",
                "no account has a login that long",
            ));
        }
        let key = login.to_lowercase();
        let found = if key.contains('@') {
            self.find_by_email(&key).await?
        } else {
            self.find_by_username(&key).await?
        };
        let attempt = Attempt::new(found.as_ref().map(|u| u.id), &key, addr);
        self.throttle.reserve(&attempt).await?;
        let ok =
            password::verify(password, found.as_ref().map(|u| u.password_hash.clone())).await?;
        let Some(account) = found.filter(|_| ok) else {
            tracing::info!("login refused");
            return Err(ApiError::unauthenticated("wrong login or password"));
        };
        self.throttle.succeeded(&attempt).await;
        let (session_id, refresh_token) =
            sessions::start(&self.db, account.id, self.session_lifetime).await?;
        tracing::info!(user_id = %account.id, "signed in");
        self.signed_in(account, session_id, refresh_token)
    }

    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, presented: &str) -> ApiResult<SignedIn> {
        let presented = RefreshToken::from_client(presented);
        let txn = begin_write(&self.db).await?;
        let rotation = sessions::rotate(&txn, &presented).await?;
        let revoked = match &rotation {
            Rotation::Reused {
                user_id,
                session_id,
            } => {
                self.record(&txn, *user_id, &[Ended::Session(*session_id)])
                    .await?
            }
            _ => Vec::new(),
        };
        txn.commit().await?;
        self.revocations.add(&revoked);
        match rotation {
            Rotation::Rotated {
                user_id,
                session_id,
                token,
            } => {
                let account = self.find_by_id(user_id).await?.ok_or_else(|| {
                    ApiError::unauthenticated("the refresh token is invalid or expired")
                })?;
                self.signed_in(account, session_id, token)
            }
            Rotation::Invalid => Err(ApiError::unauthenticated(
                "the refresh token is invalid or expired",
            )),
            Rotation::Reused {
                user_id,
                session_id,
            } => {
                tracing::warn!(%user_id, %session_id, "a rotated refresh token was presented again; session revoked");
                Err(ApiError::unauthenticated(
                    "the refresh token was already used; the session has been revoked",
                ))
            }
        }
    }

    /// Ends the session the refresh token belongs to. `false` when the token is unknown.
    pub async fn logout(&self, presented: &str) -> ApiResult<bool> {
        let presented = RefreshToken::from_client(presented);
        let txn = begin_write(&self.db).await?;
        let Some(family) = sessions::session_of(&txn, &presented).await? else {
            return Ok(false);
        };
        let revoked = if sessions::revoke(&txn, family.id, RevokeReason::Logout).await? {
            self.record(&txn, family.user_id, &[Ended::Session(family.id)])
                .await?
        } else {
            Vec::new()
        };
        txn.commit().await?;
        self.revocations.add(&revoked);
        Ok(true)
    }

    pub async fn logout_everywhere(&self, viewer: Viewer) -> ApiResult<bool> {
        let txn = begin_write(&self.db).await?;
        let ended =
            sessions::revoke_all(&txn, viewer.user_id, None, RevokeReason::LogoutEverywhere)
                .await?;
        let revoked = self.record_sessions(&txn, viewer.user_id, &ended).await?;
        txn.commit().await?;
        self.revocations.add(&revoked);
        tracing::info!(user_id = %viewer.user_id, ended = ended.len(), "signed out everywhere");
        Ok(true)
    }

    /// Changes the display name and/or bio, and writes a profile-updated event to the
    /// outbox in the same transaction: the gateways' caches then drop what they hold about
    /// the account also when no gateway carried the change (a call to this subgraph
    /// directly).
    pub async fn update_profile(
        &self,
        viewer: Viewer,
        display_name: Option<String>,
        bio: Option<String>,
    ) -> ApiResult<user::Model> {
        let display_name = display_name
            .as_deref()
            .map(DisplayName::parse)
            .transpose()?;
        let bio = bio.as_deref().map(Bio::parse).transpose()?;
        let account = self.viewer_account(viewer).await?;
        let mut active: user::ActiveModel = account.into();
        if let Some(name) = display_name {
            active.display_name = Set(name.into_inner());
        }
        if let Some(bio) = bio {
            active.bio = Set(bio.into_inner());
        }
        let now = Utc::now();
        active.updated_at = Set(now);
        let txn = begin_write(&self.db).await?;
        let updated = active.update(&txn).await?;
        crate::live::profile_updated(&txn, updated.id).await?;
        write_event(
            &txn,
            outbox_event::TOPIC_PROFILE_UPDATED,
            serde_json::json!({ "userId": updated.id, "updatedAt": now }),
        )
        .await?;
        txn.commit().await?;
        self.live_signal.notify();
        self.ring_outbox();
        Ok(updated)
    }

    /// Changes the password after checking the current one, and ends every other session.
    pub async fn change_password(
        &self,
        viewer: Viewer,
        current: &str,
        new: &str,
        addr: IpAddr,
    ) -> ApiResult<bool> {
        let account = self.viewer_account(viewer).await?;
        let new = Password::parse(
            new,
            "newPassword",
            &[&account.username, &account.email, &account.display_name],
        )?;
        self.recheck_password(&account, current, "currentPassword", addr)
            .await?;
        let hash = password::hash(&new).await?;
        let txn = begin_write(&self.db).await?;
        let mut active: user::ActiveModel = account.into();
        active.password_hash = Set(hash);
        active.updated_at = Set(Utc::now());
        active.update(&txn).await?;
        let ended = sessions::revoke_all(
            &txn,
            viewer.user_id,
            Some(viewer.session_id),
            RevokeReason::PasswordChanged,
        )
        .await?;
        let revoked = self.record_sessions(&txn, viewer.user_id, &ended).await?;
        txn.commit().await?;
        self.revocations.add(&revoked);
        tracing::info!(user_id = %viewer.user_id, ended = ended.len(), "password changed; other sessions revoked");
        Ok(true)
    }

    /// Deletes the account and everything personal in it; sessions go with it (cascade),
    /// and an account-deleted event is written to the outbox in the same transaction.
    pub async fn delete_account(
        &self,
        viewer: Viewer,
        password: &str,
        addr: IpAddr,
    ) -> ApiResult<bool> {
        let account = self.viewer_account(viewer).await?;
        self.recheck_password(&account, password, "password", addr)
            .await?;
        let now = Utc::now();
        let txn = begin_write(&self.db).await?;
        user::Entity::delete_by_id(account.id).exec(&txn).await?;
        write_event(
            &txn,
            outbox_event::TOPIC_ACCOUNT_DELETED,
            serde_json::json!({ "userId": account.id, "deletedAt": now }),
        )
        .await?;
        let revoked = self
            .record(&txn, account.id, &[Ended::Account(account.id)])
            .await?;
        txn.commit().await?;
        self.revocations.add(&revoked);
        self.ring_outbox();
        tracing::info!(user_id = %account.id, "account deleted");
        Ok(true)
    }

    /// The account `id`, from the primary.
    pub async fn find_by_id(&self, id: Uuid) -> ApiResult<Option<user::Model>> {
        Ok(by_id(self.current(), id).await?)
    }

    /// The account named `username`, from the primary.
    pub async fn find_by_username(&self, username: &str) -> ApiResult<Option<user::Model>> {
        Ok(by_username(self.current(), username).await?)
    }

    /// The account with `email` (in any case), from the primary.
    pub async fn find_by_email(&self, email: &str) -> ApiResult<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(ExprTrait::eq(
                Func::lower(Expr::col(user::Column::Email)),
                email.trim().to_lowercase(),
            ))
            .one(self.current())
            .await?)
    }

    /// A profile read routed `from` (`me`): a failure on the replica is read again from
    /// the primary.
    #[tracing::instrument(skip(self))]
    pub async fn profile(&self, from: ReadFrom, id: Uuid) -> ApiResult<Option<user::Model>> {
        match by_id(self.reads.connection(from), id).await {
            Err(_) if from == ReadFrom::Replica => {
                self.reads.replica_read_failed();
                Ok(by_id(&self.db, id).await?)
            }
            done => Ok(done?),
        }
    }

    /// [`Self::profile`] by username (`userByUsername`).
    #[tracing::instrument(skip(self))]
    pub async fn profile_by_username(
        &self,
        from: ReadFrom,
        username: &str,
    ) -> ApiResult<Option<user::Model>> {
        match by_username(self.reads.connection(from), username).await {
            Err(_) if from == ReadFrom::Replica => {
                self.reads.replica_read_failed();
                Ok(by_username(&self.db, username).await?)
            }
            done => Ok(done?),
        }
    }

    /// Many profiles in one query, routed `from`: what the `User` DataLoader calls (`user`,
    /// entity representations from the gateway).
    #[tracing::instrument(skip(self, ids), fields(ids = ids.len()))]
    pub async fn profiles(
        &self,
        from: ReadFrom,
        ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, user::Model>> {
        let found = match by_ids(self.reads.connection(from), ids).await {
            Err(_) if from == ReadFrom::Replica => {
                self.reads.replica_read_failed();
                by_ids(&self.db, ids).await?
            }
            done => done?,
        };
        Ok(found.into_iter().map(|u| (u.id, u)).collect())
    }

    async fn viewer_account(&self, viewer: Viewer) -> ApiResult<user::Model> {
        self.find_by_id(viewer.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the account no longer exists"))
    }

    /// Re-checks the password of a signed-in user, throttled like a login.
    async fn recheck_password(
        &self,
        account: &user::Model,
        password: &str,
        field: &'static str,
        addr: IpAddr,
    ) -> ApiResult<()> {
        let attempt = Attempt::new(Some(account.id), &account.username, addr);
        self.throttle.reserve(&attempt).await?;
        if password::verify(password, Some(account.password_hash.clone())).await? {
            self.throttle.succeeded(&attempt).await;
            Ok(())
        } else {
            Err(ApiError::bad_input(field, "the password is incorrect"))
        }
    }

    /// Records, in `txn`, that tokens of `ended` stop working; hand the result to
    /// [`Revocations::add`] once `txn` is committed.
    async fn record<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: Uuid,
        ended: &[Ended],
    ) -> Result<Vec<Revocation>, DbErr> {
        revocation::record(txn, user_id, ended, self.signer.ttl()).await
    }

    async fn record_sessions<C: ConnectionTrait>(
        &self,
        txn: &C,
        user_id: Uuid,
        sessions: &[Uuid],
    ) -> Result<Vec<Revocation>, DbErr> {
        let ended: Vec<Ended> = sessions.iter().copied().map(Ended::Session).collect();
        self.record(txn, user_id, &ended).await
    }

    /// Wakes the outbox consumers of this process after an event is committed.
    fn ring_outbox(&self) {
        if let Some(signal) = &self.outbox_signal {
            signal.notify();
        }
    }

    fn signed_in(
        &self,
        user: user::Model,
        session_id: Uuid,
        refresh_token: RefreshToken,
    ) -> ApiResult<SignedIn> {
        let access_token = self
            .signer
            .sign(user.id, session_id)
            .map_err(|err| ApiError::internal("signing an access token", err))?;
        Ok(SignedIn {
            access_token,
            refresh_token,
            expires_in: self.signer.ttl().as_secs(),
            user,
        })
    }
}
