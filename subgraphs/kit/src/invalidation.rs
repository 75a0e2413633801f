//! Telling caches about changes no mutation announced. The gateway invalidates cached
//! responses by the entity ids a mutation names or returns; effects that travel through the
//! outbox (an account deletion lowering other users' follower counts) reach no gateway that
//! way, so the code that applies them reports the ids it changed here.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use uuid::Uuid;

/// Something that forgets what it cached about entities (the gateway's caches).
pub trait InvalidationSink: Send + Sync + Debug {
    /// Drops every cached response or entity that mentions any of `ids`. Failures are the
    /// sink's to log: the change is already committed, and TTLs bound what is left.
    fn invalidate(&self, ids: Vec<Uuid>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Where changed entity ids go; nowhere when no cache is configured.
#[derive(Debug, Clone, Default)]
pub struct Invalidations(Option<Arc<dyn InvalidationSink>>);

impl Invalidations {
    pub fn new(sink: Arc<dyn InvalidationSink>) -> Self {
        Self(Some(sink))
    }

    pub async fn invalidate(&self, ids: Vec<Uuid>) {
        if let Some(sink) = &self.0
            && !ids.is_empty()
        {
            sink.invalidate(ids).await;
        }
    }
}
