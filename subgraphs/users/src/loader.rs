//! The `User` DataLoader: every user looked up while resolving one request (entity
//! representations from the gateway, most of all) is fetched in one statement.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use gantry_entities::user;
use gantry_kit::ApiError;
use uuid::Uuid;

use crate::service::UsersService;

#[derive(Debug)]
pub struct UserLoader(pub Arc<UsersService>);

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>, ApiError> {
        self.0.find_many(keys).await
    }
}
