//! The bookkeeping of one viewer's timeline. `entries` counts the entries written since
//! the last trim (an upper bound: removals do not lower it), so a trim runs once per many
//! writes rather than on each. `horizon` is the oldest post id the timeline is complete
//! from: entries older than it were trimmed, so a feed page that reaches past it is read
//! from `follows` and `posts` instead. `None` means nothing was ever trimmed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timeline_heads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub viewer_id: Uuid,
    pub entries: i64,
    pub horizon: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
