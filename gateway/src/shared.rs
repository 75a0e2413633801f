//! The state gateway replicas share through Redis: the connection lives in
//! [`gantry_kit::shared`], so the subgraphs (login throttling, registration limits) reach
//! the same Redis the same way.

pub use gantry_kit::shared::{
    CommandLike, HEALTH_CHECK_EVERY, RedisSettings, SharedState, SharedStateError,
};
