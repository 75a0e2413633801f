//! The `User` DataLoader: every user looked up while resolving one request (entity
//! representations from the gateway, most of all) is fetched in one statement. There is
//! one loader per read route (see [`gantry_kit::reads`]), so a batch never mixes a
//! request that may read the replica with one that must read the primary.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use gantry_entities::user;
use gantry_kit::ApiError;
use gantry_kit::reads::ReadFrom;
use uuid::Uuid;

use crate::service::UsersService;

#[derive(Debug)]
pub struct UserLoader {
    service: Arc<UsersService>,
    from: ReadFrom,
}

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>, ApiError> {
        self.service.profiles(self.from, keys).await
    }
}

/// The `User` loader of each read route.
pub struct UserLoaders {
    primary: Arc<DataLoader<UserLoader>>,
    replica: Arc<DataLoader<UserLoader>>,
}

impl UserLoaders {
    /// `delay` is how long each loader gathers keys before it queries.
    pub fn new(service: &Arc<UsersService>, delay: std::time::Duration) -> Self {
        let loader = |from| {
            Arc::new(
                DataLoader::new(
                    UserLoader {
                        service: service.clone(),
                        from,
                    },
                    tokio::spawn,
                )
                .delay(delay),
            )
        };
        Self {
            primary: loader(ReadFrom::Primary),
            replica: loader(ReadFrom::Replica),
        }
    }

    /// The loader of requests routed `from` (shared, for streams that outlive a request).
    pub fn of(&self, from: ReadFrom) -> &Arc<DataLoader<UserLoader>> {
        match from {
            ReadFrom::Primary => &self.primary,
            ReadFrom::Replica => &self.replica,
        }
    }
}
