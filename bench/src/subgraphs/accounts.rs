//! `accounts`: the users. Owns `User` (`@key(fields: "id")`); `username` is `@shareable`,
//! since `reviews` answers it too.

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

use super::catalogue::{CATALOGUE, UserRow};

#[derive(SimpleObject, Debug, Clone)]
pub struct User {
    id: ID,
    name: Option<String>,
    #[graphql(shareable)]
    username: Option<String>,
    birthday: Option<i32>,
}

impl From<&UserRow> for User {
    fn from(row: &UserRow) -> Self {
        Self {
            id: ID(row.id.clone()),
            name: Some(row.name.clone()),
            username: Some(row.username.clone()),
            birthday: Some(row.birthday),
        }
    }
}

#[derive(Debug)]
pub struct Query;

#[Object]
impl Query {
    async fn me(&self) -> Option<User> {
        CATALOGUE.users.first().map(User::from)
    }

    async fn user(&self, id: ID) -> Option<User> {
        CATALOGUE.user(&id).map(User::from)
    }

    async fn users(&self) -> Option<Vec<Option<User>>> {
        Some(CATALOGUE.users.iter().map(|u| Some(u.into())).collect())
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> Option<User> {
        CATALOGUE.user(&id).map(User::from)
    }
}

pub type AccountsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> AccountsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
