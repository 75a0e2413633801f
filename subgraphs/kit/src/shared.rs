//! The state replicas share through Redis (persisted queries, cached responses,
//! invalidation tags, rate limits, login throttling). Every call is bounded by a timeout, and
//! a failing Redis never fails a request: callers treat an error as a miss and carry on.
//!
//! Redis that does not answer at start is the same as Redis lost later: the process starts
//! anyway, the shared caches are bypassed (never replaced by per-process ones, which a
//! mutation through another replica could not reach), and the connection is made in the
//! background as soon as Redis answers. A check every [`HEALTH_CHECK_EVERY`] keeps
//! [`SharedState::is_healthy`] (`gantry_redis_up`) true to Redis without waiting for traffic,
//! and logs each change once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
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
    /// PEM CA certificates a `rediss://` server's certificate must chain to, instead of
    /// the public roots (a private CA). Default: none, the public roots.
    pub root_certificates: Option<Vec<u8>>,
}

/// A client of the Redis `settings` name; a `rediss://` one trusts their CA certificates
/// when they have some.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, redis::RedisError> {
    match &settings.root_certificates {
        Some(roots) if settings.url.starts_with("rediss://") => redis::Client::build_with_tls(
            settings.url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.clone()),
            },
        ),
        _ => redis::Client::open(settings.url.as_str()),
    }
}

/// How often the connection is checked in the background.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

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
    inner: Arc<Connection>,
}

struct Connection {
    manager: ConnectionManager,
    settings: RedisSettings,
    healthy: AtomicBool,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("key_prefix", &self.inner.settings.key_prefix)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Sets up the connection without waiting for Redis, and starts the background check
    /// (it ends when the last clone is dropped). Fails only when the URL is not a Redis
    /// URL; a Redis that does not answer yet is connected to when it does.
    pub fn new(settings: RedisSettings) -> Result<Self, SharedStateError> {
        let client = client(&settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        let state = Self {
            inner: Arc::new(Connection {
                manager,
                settings,
                healthy: AtomicBool::new(false),
            }),
        };
        tokio::spawn(watch_health(Arc::downgrade(&state.inner)));
        Ok(state)
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.settings.key_prefix)
    }

    /// Runs one command (or pipeline) within the timeout, recording health.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &(impl CommandLike + Sync),
    ) -> Result<T, SharedStateError> {
        self.query_within(command, self.inner.settings.timeout)
            .await
    }

    async fn query_within<T: redis::FromRedisValue>(
        &self,
        command: &(impl CommandLike + Sync),
        timeout: Duration,
    ) -> Result<T, SharedStateError> {
        let mut connection = self.inner.manager.clone();
        let result = tokio::time::timeout(timeout, command.run(&mut connection)).await;
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(SharedStateError::Redis(err)),
            Err(_) => Err(SharedStateError::Timeout(timeout)),
        };
        self.inner.healthy.store(result.is_ok(), Ordering::Relaxed);
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
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Pings Redis now (for `/ready`); never fails the caller.
    pub async fn health(&self) -> bool {
        self.ping().await.is_ok()
    }

    async fn ping(&self) -> Result<String, SharedStateError> {
        self.query::<String>(&redis::cmd("PING")).await
    }
}

/// How long the first background check may take: it makes the first connection, which
/// requests (bounded by the much shorter call timeout) would otherwise each start and give
/// up on while the machine is busy.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(5);

/// Pings Redis every [`HEALTH_CHECK_EVERY`] while a [`SharedState`] lives, which also makes
/// the connection manager reconnect, and logs when Redis stops or starts answering.
async fn watch_health(connection: Weak<Connection>) {
    let mut answered: Option<bool> = None;
    loop {
        let Some(inner) = connection.upgrade() else {
            return;
        };
        let state = SharedState { inner };
        let result = match answered {
            None => {
                state
                    .query_within::<String>(&redis::cmd("PING"), FIRST_CONNECTION_WAIT)
                    .await
            }
            Some(_) => state.ping().await,
        };
        match (&result, answered) {
            (Ok(_), Some(false)) => {
                tracing::info!("Redis answers again; the shared caches are back in use");
            }
            (Ok(_), None) => tracing::info!("connected to Redis"),
            (Err(err), None | Some(true)) => tracing::warn!(
                error = %err,
                "Redis does not answer; the shared caches are bypassed (requests still \
                 succeed) and the connection is retried in the background"
            ),
            _ => {}
        }
        answered = Some(result.is_ok());
        drop(state);
        tokio::time::sleep(HEALTH_CHECK_EVERY).await;
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

impl CommandLike for redis::ScriptInvocation<'_> {
    fn run<'a>(
        &'a self,
        connection: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.invoke_async(connection)
    }
}
