//! An author whose posts are not fanned out to followers' timelines but read at feed time,
//! because they had more followers than the fan-out limit when they posted. The mark
//! stays when followers leave: every post written after it is missing from timelines, so
//! only a rebuild of the timelines may lift it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "feed_pulled_authors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub author_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
