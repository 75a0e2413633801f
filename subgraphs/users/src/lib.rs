//! The users subgraph: accounts, sessions and access-token issuing, served as a
//! federation v2 subgraph (`User @key(fields: "id")`).
//!
//! # Layout
//! - [`domain`]: parsed account input (`Username`, `Email`, `Password`, …).
//! - [`password`]: Argon2id hashing on the blocking pool.
//! - [`sessions`]: refresh-token families: start, rotate with reuse detection, revoke.
//! - [`throttle`]: login back-off per account and per client address, reserved before
//!   the password is verified; the registration limit per address.
//! - [`service`]: every operation, over SeaORM.
//! - [`loader`]: the `User` DataLoaders, one per read route.
//! - [`relay`]: hands committed outbox events to Redis Streams, for subgraphs with
//!   databases of their own.
//! - [`schema`]: the GraphQL types and resolvers.
//! - [`live`]: the live events profile changes record, and the `Subscription` root
//!   (`profileUpdated`) they feed.
//! - this file: [`UsersSubgraph`], which wires them and serves HTTP.

pub mod domain;
pub mod live;
pub mod loader;
pub mod password;
pub mod relay;
pub mod schema;
pub mod service;
pub mod sessions;
pub mod throttle;

use std::sync::Arc;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gantry_kit::jwt::{JwtSettings, TokenSigner, TokenVerifier};
use gantry_kit::keys::{SigningKey, jwks};
use gantry_kit::live::channel::RedisLive;
use gantry_kit::live::outbox::LiveRelay;
use gantry_kit::live::{LiveDelivery, LiveSettings};
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::reads::ReadRouting;
use gantry_kit::revocation::{self, Revocations};
use gantry_kit::server::{HttpAuth, SubscriptionEndpoint, graphql_router};
use sea_orm::DatabaseConnection;

pub use schema::UsersSchema;
pub use throttle::ThrottleSettings;

/// Everything the users subgraph needs to run.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub jwt: JwtSettings,
    pub throttle: ThrottleSettings,
    /// Peers (the gateways) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: gantry_kit::client::TrustedProxies,
    /// How long the `User` DataLoader gathers keys before querying.
    pub batch_delay: std::time::Duration,
    /// Redis, where login attempts and registrations are counted for every replica.
    /// Default: none, counted in this process.
    pub shared: Option<gantry_kit::shared::SharedState>,
    /// The ended sessions and deleted accounts this process refuses tokens of; the ones
    /// this subgraph writes are added at once. Keep it current with
    /// [`gantry_kit::revocation::follow`] when other replicas write too.
    pub revocations: Revocations,
    /// How live events reach subscriptions, and their limits.
    pub live: LiveSettings,
}

/// The assembled subgraph: its schema (for in-process calls) and its HTTP routes.
#[derive(Clone)]
pub struct UsersSubgraph {
    pub schema: UsersSchema,
    pub key: SigningKey,
    pub verifier: Arc<TokenVerifier>,
    /// The live events this process's subscriptions read.
    pub live: LiveDelivery,
    trusted_proxies: gantry_kit::client::TrustedProxies,
    db: DatabaseConnection,
}

impl std::fmt::Debug for UsersSubgraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersSubgraph")
            .field("kid", &self.key.public.kid)
            .finish_non_exhaustive()
    }
}

impl UsersSubgraph {
    /// `outbox_signal` wakes outbox consumers running in the same process. Every read
    /// from `db`.
    pub fn new(
        db: DatabaseConnection,
        key: SigningKey,
        config: UsersConfig,
        outbox_signal: Option<OutboxSignal>,
    ) -> anyhow::Result<Self> {
        Self::with_reads(ReadRouting::primary_only(db), key, config, outbox_signal)
    }

    /// Public profile reads routed between the primary and a replica by `reads` (see
    /// [`service`]); writes, sign-in, sessions and revocations use its primary.
    pub fn with_reads(
        reads: ReadRouting,
        key: SigningKey,
        config: UsersConfig,
        outbox_signal: Option<OutboxSignal>,
    ) -> anyhow::Result<Self> {
        let db = reads.primary().clone();
        let verifier = Arc::new(
            TokenVerifier::new(std::slice::from_ref(&key.public), &config.jwt)?
                .with_revocations(config.revocations.clone()),
        );
        let signer = TokenSigner::new(key.clone(), config.jwt);
        let live = LiveDelivery::new(live::SUBGRAPH, config.live.clone());
        let service = Arc::new(
            service::UsersService::new(
                reads,
                signer,
                throttle::LoginThrottle::new(config.throttle.clone(), config.shared.clone()),
                outbox_signal,
                config.revocations.clone(),
            )
            .with_live_signal(live.signal.clone()),
        );
        Ok(Self {
            schema: schema::build(
                service,
                throttle::RegistrationLimit::new(&config.throttle, config.shared.clone()),
                config.batch_delay,
                &live,
            ),
            key,
            verifier,
            live,
            trusted_proxies: config.trusted_proxies.clone(),
            db,
        })
    }

    /// The relay of this subgraph's committed live events: to this process's
    /// subscriptions, or, given the Redis `channel`, to every replica's (listen to it with
    /// [`RedisLive::listen`] and [`UsersSubgraph::live`]'s bus).
    pub fn live_relay(&self, channel: Option<RedisLive>) -> LiveRelay {
        self.live.relay(self.db.clone(), live::TABLE, channel)
    }

    /// `/graphql` (with subscriptions over WebSocket on it), `/.well-known/jwks.json` and
    /// [`REVOCATIONS_PATH`] (add `/health` with [`gantry_kit::server::with_common_layers`]).
    pub fn router(&self) -> Router {
        let auth = HttpAuth {
            verifier: self.verifier.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
        };
        let set = jwks(std::slice::from_ref(&self.key.public));
        let db = self.db.clone();
        let endpoint = SubscriptionEndpoint::new(self.live.limits.clone(), &self.live.settings);
        graphql_router(self.schema.clone(), auth, endpoint)
            .route(
                "/.well-known/jwks.json",
                get(move || async move { Json(set.clone()) }),
            )
            .route(
                REVOCATIONS_PATH,
                get(move |query: Query<RevocationsQuery>| revocations_after(db.clone(), query)),
            )
    }
}

/// Where the users subgraph lists revocations for gateways, which have no database:
/// `GET /revocations?after=SEQ` answers `{"revocations": [...]}`, the live ones after
/// `SEQ` in commit order, at most [`revocation::PAGE`]. An ended session is named only by
/// its random id, a deleted account by the id it no longer uses.
pub const REVOCATIONS_PATH: &str = "/revocations";

#[derive(Debug, serde::Deserialize)]
struct RevocationsQuery {
    #[serde(default)]
    after: i64,
}

async fn revocations_after(
    db: DatabaseConnection,
    Query(query): Query<RevocationsQuery>,
) -> Response {
    match revocation::after(&db, query.after).await {
        Ok(revocations) => Json(serde_json::json!({ "revocations": revocations })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "listing revocations failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": "revocations cannot be read now" })),
            )
                .into_response()
        }
    }
}
