//! The posts subgraph: posts, comments, likes, follows and the home feed, served as a
//! federation v2 subgraph (`Post @key(fields: "id")`, and the `User` fields that live
//! here). Every per-parent field is batched, so a page costs a fixed number of statements.
//!
//! # Layout
//! - [`domain`]: parsed input (`PostBody`, `CommentBody`, ids).
//! - `accounts`: which accounts exist, and the per-account lock that keeps writes and
//!   account deletion apart.
//! - [`pages`]: keyset pages, one parent's or many parents' in one statement.
//! - [`loaders`]: the DataLoader behind every per-parent field.
//! - [`service`]: writes, and the feed and latest-posts lists.
//! - [`timelines`]: the feed's fan-out on write (capped per-viewer timelines) for most
//!   authors, and fan-out on read for the most-followed ones.
//! - [`schema`]: the GraphQL types and resolvers.
//! - [`live`]: the live events writes record for subscribers.
//! - [`subscriptions`]: the `Subscription` root (`postCreated`, `commentAdded`,
//!   `postLikeCountChanged`), fed by those events.
//! - [`consumer`]: learns of new accounts and removes a deleted account's content, from
//!   the users subgraph's outbox in the same database.
//! - [`events`]: the same, from Redis Streams, for a posts database of its own.
//! - this file: [`PostsSubgraph`], which wires them and serves HTTP.

pub(crate) mod accounts;
pub mod consumer;
pub mod domain;
pub mod events;
pub mod live;
pub mod loaders;
pub mod pages;
pub mod schema;
pub mod service;
pub mod subscriptions;
pub mod timelines;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use gantry_kit::invalidation::Invalidations;
use gantry_kit::jwt::TokenVerifier;
use gantry_kit::live::channel::RedisLive;
use gantry_kit::live::outbox::LiveRelay;
use gantry_kit::live::{LiveDelivery, LiveSettings};
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::reads::ReadRouting;
use gantry_kit::server::{HttpAuth, SubscriptionEndpoint, graphql_router};
use sea_orm::DatabaseConnection;

pub use consumer::AccountDeletionConsumer;
pub use schema::PostsSchema;
pub use timelines::{FeedRead, FeedSettings};

#[derive(Debug, Clone)]
pub struct PostsConfig {
    /// How often the account-deletion consumer polls the outbox. Default 1 s.
    pub outbox_poll_interval: Duration,
    /// Peers (the gateways) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: gantry_kit::client::TrustedProxies,
    /// How long DataLoaders gather keys before querying. Default 1 ms.
    pub batch_delay: Duration,
    /// How the home feed splits between fan-out on write and on read.
    pub feed: FeedSettings,
    /// How live events reach subscriptions, and their limits.
    pub live: LiveSettings,
}

impl Default for PostsConfig {
    fn default() -> Self {
        Self {
            outbox_poll_interval: Duration::from_secs(1),
            trusted_proxies: gantry_kit::client::TrustedProxies::loopback(),
            batch_delay: Duration::from_millis(1),
            feed: FeedSettings::default(),
            live: LiveSettings::default(),
        }
    }
}

/// The assembled subgraph: its schema (for in-process calls), its HTTP routes, and the
/// outbox consumer and live-event relay to run beside it.
#[derive(Clone)]
pub struct PostsSubgraph {
    pub schema: PostsSchema,
    pub verifier: Arc<TokenVerifier>,
    /// The live events this process's subscriptions read.
    pub live: LiveDelivery,
    db: DatabaseConnection,
    config: PostsConfig,
}

impl std::fmt::Debug for PostsSubgraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostsSubgraph").finish_non_exhaustive()
    }
}

impl PostsSubgraph {
    pub fn new(db: DatabaseConnection, verifier: Arc<TokenVerifier>, config: PostsConfig) -> Self {
        Self::with_reads(ReadRouting::primary_only(db), verifier, config)
    }

    /// Reads routed between the primary and a replica by `reads` (see
    /// [`gantry_kit::reads`]); writes and the outbox consumer use its primary.
    pub fn with_reads(
        reads: ReadRouting,
        verifier: Arc<TokenVerifier>,
        config: PostsConfig,
    ) -> Self {
        let db = reads.primary().clone();
        let live = LiveDelivery::new(live::SUBGRAPH, config.live.clone());
        let service = Arc::new(
            service::PostsService::with_reads(reads)
                .with_feed(config.feed)
                .with_live_signal(live.signal.clone()),
        );
        Self {
            schema: schema::build(service, config.batch_delay, &live),
            verifier,
            live,
            db,
            config,
        }
    }

    /// `/graphql`, with subscriptions over WebSocket on it (add `/health` with
    /// [`gantry_kit::server::with_common_layers`]).
    pub fn router(&self) -> Router {
        let auth = HttpAuth {
            verifier: self.verifier.clone(),
            trusted_proxies: self.config.trusted_proxies.clone(),
        };
        let endpoint = SubscriptionEndpoint::new(self.live.limits.clone(), &self.live.settings);
        graphql_router(self.schema.clone(), auth, endpoint)
    }

    /// The relay of this subgraph's committed live events: to this process's
    /// subscriptions, or, given the Redis `channel`, to every replica's (listen to it with
    /// [`RedisLive::listen`] and [`PostsSubgraph::live`]'s bus).
    pub fn live_relay(&self, channel: Option<RedisLive>) -> LiveRelay {
        self.live.relay(self.db.clone(), live::TABLE, channel)
    }

    /// The consumer that removes deleted accounts' content; `signal` wakes it at once when
    /// the users subgraph runs in the same process.
    /// The account-deletion consumer over this subgraph's database; the ids each deletion
    /// changes go to `invalidations`.
    pub fn account_deletion_consumer(
        &self,
        signal: Option<OutboxSignal>,
        invalidations: Invalidations,
    ) -> AccountDeletionConsumer {
        AccountDeletionConsumer::new(
            self.db.clone(),
            self.config.outbox_poll_interval,
            signal,
            invalidations,
        )
    }
}
