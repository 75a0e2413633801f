//! The transactional outbox. A subgraph writes an event in the same transaction as the
//! change it describes; consumers read events in id order (UUIDv7 ids sort by time) and
//! remember the last one they handled, so delivery is at least once and nothing written
//! is lost while a consumer is down. With a database per subgraph, a relay hands them to
//! Redis Streams instead and marks them published.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// What happened, e.g. `user.account_deleted`.
    pub topic: String,
    /// The event as JSON text.
    pub payload: String,
    pub created_at: DateTimeUtc,
    /// When the relay handed it to Redis Streams; `None` until then, and always where
    /// events stay in the database.
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Topic of the event the users subgraph writes when an account is deleted.
pub const TOPIC_ACCOUNT_DELETED: &str = "user.account_deleted";

/// Topic of the event the users subgraph writes when an account is created.
pub const TOPIC_ACCOUNT_CREATED: &str = "user.account_created";

/// Topic of the event the users subgraph writes when an account changes its profile
/// (display name, bio). It names the account only, never the new values: consumers drop
/// what they cached about it, so a repeated or late event cannot bring an old value back.
pub const TOPIC_PROFILE_UPDATED: &str = "user.profile_updated";
