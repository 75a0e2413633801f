//! Plumbing every Gantry subgraph shares, so that the users and posts subgraphs agree on
//! how a viewer is recognised, how errors are coded, how cursors look and how a database
//! is opened.
//!
//! # Layout
//! - [`authorization`]: federation's `@authenticated`, for fields that need a viewer.
//! - [`error`]: the stable `extensions.code` values and the one place that turns domain
//!   and database errors into GraphQL errors.
//! - [`db`]: opening SQLite (the default, in the data dir) or PostgreSQL with sane pool and
//!   journal settings, and running migrations.
//! - [`reads`]: which pool a read goes to, the primary or a read replica (lag checks,
//!   read-your-writes).
//! - [`keys`]: the Ed25519 signing key, from configuration or generated once into the data
//!   dir, and the public JWKS.
//! - [`jwt`]: access-token claims and their verification (issuer, audience, expiry, `kid`).
//! - [`revocation`]: ended sessions and deleted accounts, whose tokens every verifier
//!   refuses; written with the change, read by every process within a second.
//! - [`text`]: the rules every piece of user text follows (no control characters, no
//!   text made only of invisible characters).
//! - [`viewer`]: who is asking, read from the `Authorization` header of a request.
//! - [`client`]: the client's address, through trusted proxies only.
//! - [`shared`]: the Redis connection replicas share state through, with bounded calls.
//! - [`rate_limit`]: GCRA rate limits, atomic in Redis, in process when Redis is away.
//! - [`cursor`]: opaque Relay cursors and `first` validation.
//! - [`outbox`]: the in-process bell that wakes outbox consumers.
//! - [`invalidation`]: reporting entities changed outside a mutation to the caches.
//! - [`prometheus`]: the process's metrics recorder and `/metrics`.
//! - [`server`]: serving any command's axum router with connection and request limits,
//!   request ids, tracing and graceful shutdown, and the GraphQL handler that hands the
//!   viewer and client address to resolvers.

pub mod authorization;
pub mod client;
pub mod cursor;
pub mod db;
pub mod error;
pub mod invalidation;
pub mod jwt;
pub mod keys;
pub mod outbox;
pub mod prometheus;
pub mod rate_limit;
pub mod reads;
pub mod revocation;
pub mod server;
pub mod shared;
pub mod text;
pub mod viewer;

pub use error::{ApiError, ErrorCode};
pub use viewer::{Viewer, ViewerState};
