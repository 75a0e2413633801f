//! The accounts the posts subgraph knows of, kept in its own database: each subgraph owns
//! its tables, so the posts side cannot read `users`. A row comes from the users
//! subgraph's account-created event (or the migration's copy of the accounts that existed
//! before); `deleted_at` is the tombstone its account-deleted event leaves, which writes
//! check under the account's lock so nothing is written for an account that is gone.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "known_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
