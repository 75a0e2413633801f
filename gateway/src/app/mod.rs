//! The gateway as a server, built from settings by [`GatewayApp::builder`]: what
//! `gantry gateway` and `gantry serve` run, and what an operator's own program runs to add
//! routes, checks or transports of its own.
//!
//! The builder owns the wiring around the request path: shared state in Redis, caches and
//! persisted queries, the supergraph (composed from subgraph URLs at start, waiting for
//! subgraphs that do not answer yet, then again on SIGHUP and at an interval; or read from
//! a file; or handed over with its transports), the transport stack (HTTP with TLS, header
//! rules, in-flight de-duplication, entity cache), the keys that verify access tokens
//! (configured, a JWKS URL, or the `users` subgraph's JWKS found in the supergraph) and
//! the external identity providers it trusts besides, with their keys kept fresh, the
//! revocations it refuses, `/ready`, `/health`, `/metrics` (on its own listener when asked)
//! and the HTTP layers (limits, CORS, request ids, tracing).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use gantry_gateway::app::{GatewayApp, GatewaySettings, SubgraphUrl, SupergraphSource};
//!
//! let subgraphs = vec![
//!     SubgraphUrl::new("users", "http://127.0.0.1:4001/graphql"),
//!     SubgraphUrl::new("posts", "http://127.0.0.1:4002/graphql"),
//! ];
//! let gateway = GatewayApp::builder(GatewaySettings::default())
//!     .supergraph(SupergraphSource::Subgraphs(subgraphs))
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//! gateway.run(listener, gantry_kit::server::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - this file: [`GatewaySettings`], the builder, and [`GatewayApp`].
//! - [`composition`]: fetching subgraph SDLs, composing at start and again later.
//! - `checks`: the gateway's `/ready` checks (supergraph, subgraphs).

mod checks;
pub mod composition;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use gantry_identity::jwt::JwtSettings;
use gantry_identity::keys::{PublicKey, jwks};
use gantry_identity::revocation::{self, RevocationError, Revocations};
use gantry_kit::server::readiness::{Readiness, ReadinessCheck};
use gantry_kit::server::{
    App, BackgroundTasks, RunError, ServerLimits, place_metrics, with_common_layers,
    with_request_limits,
};
use gantry_kit::shared::{RedisSettings, SharedState, SharedStateError};
use tokio::net::TcpListener;

use self::checks::{SubgraphHealthCheck, SupergraphCheck, health_url};
use self::composition::{CompositionError, compose_at_start};
use crate::auth::config::{AuthConfig, AuthConfigError};
use crate::auth::{Authenticator, KeyError};
use crate::cache::CacheSettings;
use crate::cache::backend::CacheBackend;
use crate::cache::entities::EntityCacheTransport;
use crate::cors::{CorsError, CorsSettings};
use crate::graphql_http::{self, HttpSettings};
use crate::header_rules::{HeaderRules, HeaderRulesTransport};
use crate::persisted::{PersistedError, PersistedQueries, PersistedSettings};
use crate::rate_limit::{RateLimitSettings, RateLimits};
use crate::revocations::RemoteRevocations;
use crate::service::{GatewayService, ServiceFeatures};
use crate::subscriptions::{
    InProcessSubscribers, SubscriptionSettings, Subscriptions, with_subscriptions,
};
use crate::transport::{HttpTransportConfig, TransportError, Transports};
use crate::{Gateway, GatewayConfig, Supergraph, SupergraphError, SupergraphOptions};

/// Where the users subgraph (and the all-in-one server) serves its public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The subgraph whose JWKS verifies tokens when nothing else is configured, and whose
/// `/revocations` lists the sessions that ended.
pub const USERS_SUBGRAPH: &str = "users";
/// The longest one JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// `NAME=URL` of a subgraph's GraphQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphUrl {
    pub name: String,
    pub url: String,
}

impl SubgraphUrl {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
        }
    }
}

/// Everything about a gateway server that is configuration; each part documents its own
/// defaults.
#[derive(Debug, Clone, Default)]
pub struct GatewaySettings {
    /// Operation limits, introspection, response size, entity batches.
    pub gateway: GatewayConfig,
    /// GraphQL over HTTP: body and batch sizes, the playground, trusted proxies.
    pub http: HttpSettings,
    /// Which web origins may call the gateway. Default: none.
    pub cors: CorsSettings,
    /// Response cache, entity cache and de-duplication.
    pub cache: CacheSettings,
    /// APQ, the persisted-operation manifest and safelisting.
    pub persisted: PersistedSettings,
    /// Rate limits per user or client address and per client name. Default: off.
    pub rate_limits: RateLimitSettings,
    /// Redis shared by every replica (caches, APQ, rate limits). Default: none, so shared
    /// state stays in this process.
    pub redis: Option<RedisSettings>,
    /// Operations running the request path at once (0: no limit).
    pub max_concurrent_operations: usize,
    /// Connection and request limits; `request_timeout` is also the operation deadline.
    pub server: ServerLimits,
    /// Serve `/metrics` on a listener of its own at this address. Default: none, so it is
    /// a route of the API's listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Issuer, audience and lifetime of the access tokens it verifies.
    pub jwt: JwtSettings,
    /// Where the access token is read, whether Gantry's own tokens count, the external
    /// identity providers, and what the authorization directives need (`--auth-config`).
    /// Default: Gantry's own tokens from `Authorization`, no providers, no policies.
    pub identity: AuthConfig,
    /// Requests to subgraphs over HTTP: timeouts, connections, TLS, response size.
    pub subgraph_http: HttpTransportConfig,
    /// Which client headers reach which subgraph. Default: client name and version.
    pub header_rules: HeaderRules,
    /// How long to wait at start for subgraphs that do not answer yet (0: not at all).
    pub startup_wait: Duration,
    /// Compose again at this interval, besides on SIGHUP. Default: none (SIGHUP only).
    pub recompose_every: Option<Duration>,
    /// The request header in which clients name progressive override labels to activate;
    /// `None`: only `percent(x)` labels are ever active.
    pub override_labels_header: Option<axum::http::HeaderName>,
    /// Subscriptions: limits per connection and per process, heartbeats.
    pub subscriptions: SubscriptionSettings,
}

/// Where the supergraph comes from.
pub enum SupergraphSource {
    /// Fetched from each subgraph's `_service { sdl }` and composed; composed again on
    /// SIGHUP and every [`GatewaySettings::recompose_every`]; reached over HTTP.
    Subgraphs(Vec<SubgraphUrl>),
    /// A supergraph SDL file composed by any standard tool; its subgraphs reached over HTTP.
    File(PathBuf),
    /// Already composed, reached through `transports` (the all-in-one server's in-process
    /// subgraphs, or transports of the operator's own).
    Composed {
        supergraph: Box<Supergraph>,
        transports: Transports,
    },
}

impl std::fmt::Debug for SupergraphSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subgraphs(subgraphs) => f.debug_tuple("Subgraphs").field(subgraphs).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Composed { .. } => f.write_str("Composed"),
        }
    }
}

/// The keys that verify access tokens. A gateway never makes one up: a key of its own would
/// verify no token the users subgraph issued, and every signed-in request would fail.
#[derive(Debug, Clone, Default)]
pub enum TokenKeys {
    /// The `users` subgraph's `/.well-known/jwks.json`, its URL from the supergraph.
    #[default]
    UsersSubgraphJwks,
    /// The keys published at this JWKS URL, fetched again on unknown key ids.
    Jwks(String),
    /// Exactly these keys (the signing key's public half).
    Keys(Vec<PublicKey>),
}

/// Where the revocations the gateway refuses tokens of come from.
#[derive(Debug, Clone, Default)]
pub enum RevocationFeed {
    /// Asked of the `users` subgraph's `/revocations` every second.
    #[default]
    UsersSubgraph,
    /// This set, kept up to date by its owner (the all-in-one server's users subgraph and
    /// its database).
    Shared(Revocations),
}

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no supergraph: give subgraph URLs, a supergraph file or a composed supergraph")]
    NoSupergraph,
    #[error("REDIS_URL `{url}` is not usable: {source}")]
    Redis {
        url: String,
        source: SharedStateError,
    },
    #[error("setting up persisted queries: {0}")]
    Persisted(#[from] PersistedError),
    #[error("the CORS settings: {0}")]
    Cors(#[from] CorsError),
    #[error("reading the supergraph {path}: {source}")]
    SupergraphFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the supergraph {path}: {source}")]
    SupergraphSdl {
        path: PathBuf,
        source: SupergraphError,
    },
    #[error(transparent)]
    Composition(#[from] CompositionError),
    #[error("the HTTP client for subgraphs: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("the subgraph transports: {0}")]
    Transport(#[from] TransportError),
    #[error(
        "no way to verify access tokens: the supergraph has no `users` subgraph to take the \
         JWKS from; set --jwks-url (GANTRY_JWKS_URL) to the JWKS of the service that issues \
         them, or GANTRY_JWT_PRIVATE_KEY_FILE to its signing key"
    )]
    NoTokenKeys,
    #[error("the users subgraph's URL `{0}` is not a URL")]
    UsersUrl(String),
    #[error("the keys that verify access tokens: {0}")]
    Keys(#[from] KeyError),
    #[error("setting up the identity providers: {0}")]
    Identity(#[from] AuthConfigError),
    #[error("following revocations: {0}")]
    Revocations(#[from] RevocationError),
}

/// Builds a [`GatewayApp`]; see the module docs.
#[derive(Debug)]
pub struct GatewayBuilder {
    settings: GatewaySettings,
    supergraph: Option<SupergraphSource>,
    keys: TokenKeys,
    revocations: RevocationFeed,
    shared: Option<SharedState>,
    publish_key: Option<PublicKey>,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    routes: Option<Router>,
    tasks: BackgroundTasks,
    in_process_subscribers: InProcessSubscribers,
}

impl GatewayBuilder {
    /// Subgraphs in this process that subscriptions reach without a socket (the
    /// all-in-one server's); every other subgraph is subscribed to over a WebSocket at its
    /// URL.
    pub fn in_process_subscribers(mut self, subscribers: InProcessSubscribers) -> Self {
        self.in_process_subscribers = subscribers;
        self
    }

    /// Where the supergraph comes from (required).
    pub fn supergraph(mut self, source: SupergraphSource) -> Self {
        self.supergraph = Some(source);
        self
    }

    /// The keys that verify access tokens. Default: the `users` subgraph's JWKS.
    pub fn token_keys(mut self, keys: TokenKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Where revoked sessions come from. Default: the `users` subgraph's `/revocations`.
    pub fn revocations(mut self, feed: RevocationFeed) -> Self {
        self.revocations = feed;
        self
    }

    /// Shares state through this Redis connection instead of opening one from
    /// [`GatewaySettings::redis`] (when the subgraphs of this process share it too).
    pub fn shared_state(mut self, shared: Option<SharedState>) -> Self {
        self.shared = shared;
        self
    }

    /// Publishes `key` at [`JWKS_PATH`] (a process that holds the signing key).
    pub fn publish_jwks(mut self, key: PublicKey) -> Self {
        self.publish_key = Some(key);
        self
    }

    /// Adds a check to `/ready` (the database of a process that has one).
    pub fn readiness_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Tasks already running beside this server (a replica watcher, revocation
    /// followers); they stop with it.
    pub fn background_tasks(mut self, tasks: BackgroundTasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// Routes of the operator's own, served beside the API under the same limits and
    /// layers.
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = Some(match self.routes.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    /// Connects what has to be connected (Redis in the background, subgraphs for their
    /// SDLs, the JWKS), and starts the tasks beside the server: following revocations and
    /// recomposing.
    pub async fn build(self) -> Result<GatewayApp, BuildError> {
        let settings = self.settings;
        let cors = settings.cors.layer()?;
        let shared = match (self.shared, &settings.redis) {
            (Some(shared), _) => Some(shared),
            (None, Some(redis)) => {
                Some(
                    SharedState::new(redis.clone()).map_err(|source| BuildError::Redis {
                        url: gantry_kit::url::redact(&redis.url),
                        source,
                    })?,
                )
            }
            (None, None) => None,
        };
        if shared.is_some() {
            tracing::info!("sharing state through Redis");
        }
        let header_rules = Arc::new(settings.header_rules.clone());
        let features = service_features(&settings, shared, header_rules.clone())?;

        let http_client = |timeout: Duration| {
            settings
                .subgraph_http
                .tls
                .apply(reqwest::Client::builder())
                .timeout(timeout)
                .build()
        };
        let client = http_client(Duration::from_secs(10))?;
        let probes = http_client(Duration::from_secs(2))?;
        let jwks_client = http_client(JWKS_TIMEOUT)?;
        let (supergraph, transports, composed_from) =
            match self.supergraph.ok_or(BuildError::NoSupergraph)? {
                SupergraphSource::Composed {
                    supergraph,
                    transports,
                } => (*supergraph, transports, None),
                SupergraphSource::File(path) => {
                    let sdl = std::fs::read_to_string(&path).map_err(|source| {
                        BuildError::SupergraphFile {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let supergraph = Supergraph::from_sdl(&sdl, SupergraphOptions::default())
                        .map_err(|source| BuildError::SupergraphSdl { path, source })?;
                    let transports = http_transports(&supergraph, &settings, &header_rules)?;
                    (supergraph, transports, None)
                }
                SupergraphSource::Subgraphs(subgraphs) => {
                    let supergraph =
                        compose_at_start(&client, &subgraphs, settings.startup_wait).await?;
                    let transports = http_transports(&supergraph, &settings, &header_rules)?;
                    (supergraph, transports, Some(subgraphs))
                }
            };
        let users_url = supergraph.subgraph_urls().get(USERS_SUBGRAPH).cloned();
        let gateway = Arc::new(Gateway::new(
            supergraph,
            transport_stack(transports, &features),
            settings.gateway.clone(),
        ));

        let mut tasks = self.tasks;
        let revocations = match self.revocations {
            RevocationFeed::Shared(revocations) => revocations,
            RevocationFeed::UsersSubgraph => {
                let revocations = Revocations::default();
                match &users_url {
                    Some(url) => {
                        let source = RemoteRevocations::beside(url, jwks_client.clone())?;
                        tracing::info!(url = source.url(), "following revocations");
                        let list = revocations.clone();
                        tasks.spawn(move |stop| revocation::follow(list, source, stop));
                    }
                    None => tracing::warn!(
                        "the supergraph has no `users` subgraph: ended sessions are refused \
                         only when their access tokens expire"
                    ),
                }
                revocations
            }
        };
        let auth = authenticator(
            self.keys,
            users_url,
            &settings.jwt,
            revocations,
            jwks_client.clone(),
        )
        .await?;
        let auth =
            with_identity_providers(auth, &settings.identity, jwks_client, &mut tasks).await?;
        let service = Arc::new(GatewayService::new(gateway.clone(), auth, features));

        let mut readiness = Readiness::new().with(Arc::new(SupergraphCheck(gateway.clone())));
        for check in self.checks {
            readiness = readiness.with(check);
        }
        if let Some(subgraphs) = &composed_from {
            readiness = readiness.with(Arc::new(SubgraphHealthCheck {
                subgraphs: subgraphs
                    .iter()
                    .map(|s| (s.name.clone(), health_url(&s.url)))
                    .collect(),
                client: probes,
            }));
        }
        let readiness = readiness.with_redis(service.shared_state().cloned());
        if let Some(subgraphs) = composed_from {
            let (gateway, every) = (gateway.clone(), settings.recompose_every);
            tasks
                .spawn(move |stop| composition::recompose(gateway, client, subgraphs, every, stop));
        }

        // CORS sits outside the request limits, so a preflight is answered before any of
        // them counts it; the request id and tracing layers stay outermost, so preflights
        // are logged.
        let metrics = crate::service::metrics_router(service.clone());
        let subscriptions = Subscriptions::new(
            service.clone(),
            settings.subscriptions.clone(),
            self.in_process_subscribers,
            &settings.subgraph_http.tls,
        );
        let graphql = with_subscriptions(
            graphql_http::router(service.clone(), settings.http.clone()),
            subscriptions.clone(),
            &settings.http,
        );
        let mut router = graphql.merge(readiness.router());
        if let Some(routes) = self.routes {
            router = router.merge(routes);
        }
        if let Some(key) = self.publish_key {
            let set = jwks(std::slice::from_ref(&key));
            router = router.route(JWKS_PATH, get(move || async move { Json(set.clone()) }));
        }
        let (router, metrics) = place_metrics(router, metrics, settings.metrics_listen);
        // The gateway answers its own deadline, with the data that is complete.
        let router = with_request_limits(
            router,
            &settings.server,
            settings.http.max_body_bytes,
            false,
        );
        let router = match cors {
            Some(cors) => router.layer(cors),
            None => router,
        };
        let app = App {
            router: with_common_layers(router),
            metrics,
            tasks,
            limits: settings.server.clone(),
            tls: None,
        };
        Ok(GatewayApp {
            app,
            service,
            subscriptions,
        })
    }
}

/// A gateway server, built and ready to run.
#[derive(Debug)]
pub struct GatewayApp {
    /// The router, `/metrics` apart when asked, the background tasks and the limits.
    pub app: App,
    /// The gateway behind the HTTP layer (its caches, metrics and supergraph).
    pub service: Arc<GatewayService>,
    /// The live subscriptions, and the upstream subscriptions they share.
    pub subscriptions: Arc<Subscriptions>,
}

impl GatewayApp {
    /// Starts building a gateway with `settings`.
    pub fn builder(settings: GatewaySettings) -> GatewayBuilder {
        GatewayBuilder {
            settings,
            supergraph: None,
            keys: TokenKeys::default(),
            revocations: RevocationFeed::default(),
            shared: None,
            publish_key: None,
            checks: Vec::new(),
            routes: None,
            tasks: BackgroundTasks::default(),
            in_process_subscribers: InProcessSubscribers::default(),
        }
    }

    /// Serves on `listener` until `shutdown` completes (see [`App::run`]).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        self.app.run(listener, shutdown).await
    }
}

/// What the gateway service adds around the request path. Without Redis shared state stays
/// in this process; with it, shared state lives in Redis only, also while Redis does not
/// answer (then it is bypassed). A manifest that does not load is an error.
fn service_features(
    settings: &GatewaySettings,
    shared: Option<SharedState>,
    header_rules: Arc<HeaderRules>,
) -> Result<ServiceFeatures, BuildError> {
    let cache = settings.cache.clone();
    let cache_backend = CacheBackend::new(shared.clone(), cache.capacity, cache.max_ttl);
    tracing::info!(
        response_cache = cache.response_cache,
        entity_cache = cache.entity_cache,
        dedup_operations = cache.dedup_operations,
        dedup_subgraph = cache.dedup_subgraph,
        shared = shared.is_some(),
        max_concurrent_operations = settings.max_concurrent_operations,
        "caching settings"
    );
    tracing::info!(rate_limits = ?settings.rate_limits, "rate limits");
    let persisted = PersistedQueries::new(settings.persisted.clone(), shared.clone())?;
    Ok(ServiceFeatures {
        rate_limits: Arc::new(RateLimits::new(&settings.rate_limits, shared.clone())),
        persisted: Some(Arc::new(persisted)),
        shared,
        cache,
        cache_backend: Some(cache_backend),
        max_concurrent_operations: settings.max_concurrent_operations,
        request_timeout: Some(settings.server.request_timeout),
        header_rules,
        override_labels_header: settings.override_labels_header.clone(),
        authorization: Arc::new(settings.identity.authorization.clone()),
        ..ServiceFeatures::default()
    })
}

/// HTTP transports to the supergraph's subgraphs, carrying the header rules.
fn http_transports(
    supergraph: &Supergraph,
    settings: &GatewaySettings,
    rules: &Arc<HeaderRules>,
) -> Result<Transports, TransportError> {
    let config = HttpTransportConfig {
        max_response_bytes: settings.gateway.max_response_bytes,
        ..settings.subgraph_http.clone()
    };
    Ok(Transports::http(supergraph.subgraph_urls(), &config)?
        .wrapped(|inner| Arc::new(HeaderRulesTransport::new(inner, rules.clone()))))
}

/// Subgraph transports, wrapped for in-flight de-duplication and the entity cache when
/// they are on (the cache outside, so a hit skips the subgraph altogether).
fn transport_stack(transports: Transports, features: &ServiceFeatures) -> Transports {
    let transports = if features.cache.dedup_subgraph {
        transports.deduplicated(&features.metrics.subgraph_dedup)
    } else {
        transports
    };
    match (&features.cache_backend, features.cache.entity_cache) {
        (Some(backend), true) => transports.wrapped(|inner| {
            Arc::new(EntityCacheTransport::new(
                inner,
                backend.clone(),
                features.metrics.entity_cache.clone(),
                features.cache.max_ttl,
            ))
        }),
        _ => transports,
    }
}

/// The verifier of access tokens, from the keys chosen.
async fn authenticator(
    keys: TokenKeys,
    users_url: Option<String>,
    jwt: &JwtSettings,
    revocations: Revocations,
    client: reqwest::Client,
) -> Result<Authenticator, BuildError> {
    let url = match keys {
        TokenKeys::Keys(keys) => {
            return Ok(Authenticator::with_keys(&keys, jwt.clone(), revocations)?);
        }
        TokenKeys::Jwks(url) => url,
        TokenKeys::UsersSubgraphJwks => {
            let users = users_url.ok_or(BuildError::NoTokenKeys)?;
            reqwest::Url::parse(&users)
                .and_then(|url| url.join(JWKS_PATH))
                .map_err(|_| BuildError::UsersUrl(users.clone()))?
                .to_string()
        }
    };
    tracing::info!(%url, "verifying access tokens with the keys at this JWKS");
    Ok(Authenticator::with_jwks(url, client, jwt.clone(), revocations).await?)
}

/// `auth` with the token source and identity providers of `identity` (their JWKS fetched
/// with `client`), and a task keeping the providers' keys fresh.
async fn with_identity_providers(
    auth: Authenticator,
    identity: &AuthConfig,
    client: reqwest::Client,
    tasks: &mut BackgroundTasks,
) -> Result<Arc<Authenticator>, BuildError> {
    for provider in &identity.providers {
        tracing::info!(
            provider = %provider.name,
            jwks_url = %provider.jwks_url,
            issuers = ?provider.issuers,
            "trusting the tokens of this identity provider"
        );
    }
    let auth = Arc::new(auth.with_config(identity, || Ok(client)).await?);
    if !identity.providers.is_empty() {
        let refreshing = auth.clone();
        tasks.spawn(move |stop| refreshing.keep_keys_fresh(stop));
    }
    Ok(auth)
}
