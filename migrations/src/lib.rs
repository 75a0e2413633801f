//! The schema of every table Gantry owns, as sea-orm-migration steps that go up and down.
//! `gantry migrate [up|down|status]` runs them; every server command applies pending ones
//! at start.
//!
//! # Layout
//! - [`m20261127_000001_users`]: users, sessions (refresh-token families), refresh tokens,
//!   and the outbox of domain events.
//! - [`m20261127_000002_posts`]: posts, comments, likes, follows and outbox offsets.
//! - [`m20261201_000003_revocations`]: ended sessions and deleted accounts, whose tokens
//!   every process refuses.
//! - [`m20261201_000004_known_accounts`]: the accounts the posts subgraph knows of, with
//!   tombstones of deleted ones (filled from `users` when it is in the same database).
//! - [`m20261201_000005_timelines`]: the home feed's fanned-out timelines, filled from
//!   the follows and posts already there ([`rebuild_timelines`] after bulk loads).
//! - [`m20261201_000006_partition_keys`]: primary keys that hold each table's
//!   distribution column (PostgreSQL), ready for a distributed PostgreSQL.
//! - [`lock`]: applying and rolling back under a lock, so processes that start together
//!   on one database do not migrate it at the same time.

pub use sea_orm_migration::prelude::*;

pub mod lock;
pub mod m20261127_000001_users;
pub mod m20261127_000002_posts;
pub mod m20261201_000003_revocations;
pub mod m20261201_000004_known_accounts;
pub mod m20261201_000005_timelines;
pub mod m20261201_000006_partition_keys;

pub use lock::{apply_pending, roll_back};
pub use m20261201_000005_timelines::rebuild_timelines;

/// Every migration in the order it applies.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_users::Migration),
            Box::new(m20261127_000002_posts::Migration),
            Box::new(m20261201_000003_revocations::Migration),
            Box::new(m20261201_000004_known_accounts::Migration),
            Box::new(m20261201_000005_timelines::Migration),
            Box::new(m20261201_000006_partition_keys::Migration),
        ]
    }
}
