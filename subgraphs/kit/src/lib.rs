//! Plumbing every Gantry server shares, so that the gateway and the users and posts
//! subgraphs agree on how they serve, report readiness and metrics, share state through
//! Redis and rate-limit, and so that the subgraphs agree on how errors are coded, how
//! cursors look and how a database is opened.
//!
//! # The `db` feature
//!
//! Everything that touches a database — [`db`], [`reads`], [`revocation_store`], turning
//! database errors into client errors, the SQL statement counter at `/metrics`, the
//! database checks of `/ready` — is behind the default feature `db`. The gateway takes
//! kit without it and so links no ORM (`cargo tree -p gantry-gateway -e normal` lists no
//! sea-orm or sqlx). One crate with a feature rather than a second crate: the boundary is
//! the database alone, the DB-free modules are used by every server, and the subgraphs
//! keep their imports. Who is asking (tokens, keys, revocations, the viewer, the client
//! address) is the separate crate `gantry-identity`, re-exported here.
//!
//! # Layout
//! - [`authorization`]: federation's `@authenticated`, for fields that need a viewer.
//! - [`error`]: the stable `extensions.code` values and the one place that turns domain
//!   and database errors into GraphQL errors.
//! - [`db`]: opening SQLite (the default, in the data dir) or PostgreSQL with sane pool and
//!   journal settings, and running migrations.
//! - [`reads`]: which pool a read goes to, the primary or a read replica (lag checks,
//!   read-your-writes).
//! - [`keys`], [`jwt`], [`client`]: re-exported from `gantry-identity` (signing keys and
//!   JWKS, access tokens, the client's address through trusted proxies).
//! - [`revocation`]: ended sessions and deleted accounts, whose tokens every verifier
//!   refuses (from `gantry-identity`), with the revocations table they are written to and
//!   read from ([`revocation_store`]).
//! - [`text`]: the rules every piece of user text follows (no control characters, no
//!   text made only of invisible characters).
//! - [`viewer`]: who is asking (from `gantry-identity`), with the viewer as a resolver reads
//!   it from the async-graphql context ([`context`]).
//! - [`shared`]: the Redis connection replicas share state through, with bounded calls.
//! - [`rate_limit`]: GCRA rate limits, atomic in Redis, in process when Redis is away.
//! - [`url`]: connection URLs with their passwords hidden, for logs and errors.
//! - [`cursor`]: opaque Relay cursors and `first` validation.
//! - [`outbox`]: the in-process bell that wakes outbox consumers.
//! - [`live`]: live events for subscriptions: recorded with their change, relayed to the
//!   process's subscribers or, across replicas, through Redis pub/sub; subscription
//!   limits.
//! - [`events`]: events between subgraphs over Redis Streams (publisher, consumer
//!   groups, dead letters, lag).
//! - [`invalidation`]: reporting entities changed outside a mutation to the caches.
//! - [`prometheus`]: the process's metrics recorder and `/metrics`.
//! - [`server`]: serving any command's axum router with connection and request limits,
//!   request ids, tracing and graceful shutdown, and the GraphQL handler that hands the
//!   viewer and client address to resolvers.

pub mod authorization;
pub mod context;
pub mod cursor;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
pub mod events;
pub mod invalidation;
pub mod live;
pub mod outbox;
pub mod prometheus;
pub mod rate_limit;
#[cfg(feature = "db")]
pub mod reads;
#[cfg(feature = "db")]
pub mod revocation_store;
pub mod server;
pub mod shared;
pub mod text;
pub mod url;

pub use gantry_identity::{client, jwt, keys};

/// What a revocation is and how a process follows them, with the table they live in.
pub mod revocation {
    #[cfg(feature = "db")]
    pub use crate::revocation_store::{DatabaseRevocations, after, record};
    pub use gantry_identity::revocation::*;
}

/// Who is asking, and the viewer as a resolver reads it.
pub mod viewer {
    pub use crate::context::{RequireViewer, viewer_state};
    pub use gantry_identity::viewer::*;
}

pub use error::{ApiError, ErrorCode};
pub use viewer::{Viewer, ViewerState};
