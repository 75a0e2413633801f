//! Ended sessions and deleted accounts whose access tokens may still be unexpired. The
//! users subgraph writes a row in the transaction that ends the session or deletes the
//! account; every process that accepts tokens reads the rows after the last `seq` it saw
//! and refuses the tokens they name. Rows are written one at a time under a lock, so `seq`
//! order is commit order and a reader never skips one that commits late.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// The account whose tokens are refused: all of them when `session_id` is null (the
    /// account was deleted), else only those of that session.
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    /// When the last token issued before this row expires; past it the row refuses nothing.
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
