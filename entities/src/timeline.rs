//! One entry of a viewer's home timeline: `post_id`, written by `author_id`, fanned out to
//! `viewer_id` when it was posted (or when the viewer followed its author). Only authors
//! with few enough followers are fanned out; the most-followed ones are read at feed time
//! (see [`crate::feed_pulled_author`]). `author_id` is kept so an unfollow removes that
//! author's entries from one viewer's timeline without reading `posts`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timelines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub viewer_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub post_id: Uuid,
    pub author_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
