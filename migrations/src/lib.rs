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
//! - [`m20261210_000005_outbox_published`]: when each outbox event was handed to Redis
//!   Streams, so the relay finds the ones still to send.
//! - [`m20261220_000007_live_events`]: the live-event tables subscriptions are fed from,
//!   `post_live_events` and `user_live_events` (one migration each).
//! - [`lock`]: applying and rolling back under a lock, so processes that start together
//!   on one database do not migrate it at the same time.
//!
//! Each subgraph owns its migrations ([`Scope`]): `gantry subgraph users` applies the users
//! ones, `gantry subgraph posts` the posts ones, so each may have a database of its own;
//! `gantry serve` applies them all. Every scope records what it applied in the one
//! `seaql_migrations` table, so a database that both subgraphs share (every database made
//! before the split) stays a single history that [`Migrator`] reads whole.

pub use sea_orm_migration::prelude::*;

pub mod lock;
pub mod m20261127_000001_users;
pub mod m20261127_000002_posts;
pub mod m20261201_000003_revocations;
pub mod m20261201_000004_known_accounts;
pub mod m20261201_000005_timelines;
pub mod m20261201_000006_partition_keys;
pub mod m20261210_000005_outbox_published;
pub mod m20261220_000007_live_events;

pub use lock::{apply_pending, apply_pending_in, roll_back};
pub use m20261201_000005_timelines::rebuild_timelines;

/// Whose migrations a process applies: a subgraph's own, or every one (for a database the
/// subgraphs share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every migration: `gantry serve`, `gantry migrate` and `gantry seed`.
    #[default]
    All,
    /// The users subgraph's tables: accounts, sessions, revocations, its outbox and its
    /// live events.
    Users,
    /// The posts subgraph's tables: posts, comments, likes, follows, known accounts.
    Posts,
}

impl Scope {
    /// Whether `migration` (by name) belongs to this scope.
    pub fn owns(self, migration: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Users => USERS.contains(&migration),
            Scope::Posts => !USERS.contains(&migration),
        }
    }

    /// This scope's migrations, in the order they apply.
    pub fn migrations(self) -> Vec<Box<dyn MigrationTrait>> {
        Migrator::migrations()
            .into_iter()
            .filter(|migration| self.owns(migration.name()))
            .collect()
    }
}

/// The users subgraph's migrations (every other one is the posts subgraph's).
const USERS: [&str; 4] = [
    "m20261127_000001_users",
    "m20261201_000003_revocations",
    "m20261210_000005_outbox_published",
    "m20261220_000008_user_live_events",
];

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
            Box::new(m20261210_000005_outbox_published::Migration),
            Box::new(m20261220_000007_live_events::posts::Migration),
            Box::new(m20261220_000007_live_events::users::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_belongs_to_exactly_one_subgraph() {
        let all: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        for name in USERS {
            assert!(all.iter().any(|m| m == name), "{name} is a migration");
        }
        for name in &all {
            assert_ne!(Scope::Users.owns(name), Scope::Posts.owns(name), "{name}");
        }
        assert_eq!(
            Scope::Users.migrations().len() + Scope::Posts.migrations().len(),
            all.len()
        );
    }
}
