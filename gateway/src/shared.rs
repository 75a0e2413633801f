//! The state gateway replicas share through Redis (persisted queries, cached responses,
//! invalidation tags). Every call is bounded by a timeout, and a failing Redis never fails a
//! request: callers treat an error as a miss and carry on, and the connection heals by
//! itself when Redis returns. [`SharedState::health`] feeds `/ready` and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    /// Default `gantry:`.
    pub key_prefix: String,
    /// The longest any one Redis call may take before it counts as failed. Default 50 ms.
    pub timeout: Duration,
}

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered something unexpected: {0}")]
    Unexpected(String),
}

/// A Redis connection shared by every cache and store of one gateway process.
#[derive(Clone)]
pub struct SharedState {
    connection: ConnectionManager,
    settings: Arc<RedisSettings>,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("key_prefix", &self.settings.key_prefix)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Connects; fails only when the URL is unusable or Redis refuses at start. The
    /// connection reconnects by itself afterwards.
    pub async fn connect(settings: RedisSettings) -> Result<Self, SharedStateError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1);
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| SharedStateError::Timeout(Duration::from_secs(5)))??;
        Ok(Self {
            connection,
            settings: Arc::new(settings),
            healthy: Arc::new(AtomicBool::new(true)),
        })
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.key_prefix)
    }

    /// Runs one command (or pipeline) within the timeout, recording health.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &(impl CommandLike + Sync),
    ) -> Result<T, SharedStateError> {
        let mut connection = self.connection.clone();
        let result =
            tokio::time::timeout(self.settings.timeout, command.run(&mut connection)).await;
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(SharedStateError::Redis(err)),
            Err(_) => Err(SharedStateError::Timeout(self.settings.timeout)),
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        if let Err(err) = &result {
            tracing::debug!(error = %err, "redis call failed");
        }
        result.and_then(|value: redis::Value| {
            redis::from_redis_value(value)
                .map_err(|err| SharedStateError::Unexpected(err.to_string()))
        })
    }

    /// Whether the last call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Pings Redis now (for `/ready`); never fails the caller.
    pub async fn health(&self) -> bool {
        self.query::<String>(&redis::cmd("PING")).await.is_ok()
    }
}

/// A single command or a pipeline.
pub trait CommandLike {
    fn run<'a>(
        &'a self,
        connection: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a;
}

impl CommandLike for redis::Cmd {
    fn run<'a>(
        &'a self,
        connection: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(connection)
    }
}

impl CommandLike for redis::Pipeline {
    fn run<'a>(
        &'a self,
        connection: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(connection)
    }
}
