//! `gantry gateway`: the gateway alone, in front of subgraphs reached over HTTP. With
//! `--subgraph NAME=URL` it fetches each subgraph's SDL and composes them, and composes
//! again on SIGHUP and every `--recompose-interval-secs`; a new supergraph replaces the old
//! one atomically (requests in flight finish on the one they started with), and a failed
//! composition keeps the last good one. With `--supergraph FILE` it serves that file.
//!
//! At start it waits (up to `GANTRY_STARTUP_WAIT_SECS`) for subgraphs that do not answer
//! yet, so it may start before or with them. It verifies access tokens with a configured
//! key or a JWKS (`--jwks-url`, else the `users` subgraph's, found in the supergraph), and
//! refuses to start with neither rather than invent a key that verifies nothing. It
//! refuses the tokens of ended sessions and deleted accounts, asking the users subgraph's
//! `/revocations` every second for the ones after the last it saw.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use gantry_gateway::auth::Authenticator;
use gantry_gateway::auth::config::AuthConfig;
use gantry_gateway::cache::CacheSettings;
use gantry_gateway::cache::backend::CacheBackend;
use gantry_gateway::cache::entities::EntityCacheTransport;
use gantry_gateway::graphql_http::{self, HttpSettings};
use gantry_gateway::header_rules::{HeaderRules, HeaderRulesTransport};
use gantry_gateway::persisted::{PersistedQueries, PersistedSettings};
use gantry_gateway::playground::PlaygroundSettings;
use gantry_gateway::rate_limit::{RateLimitSettings, RateLimits};
use gantry_gateway::revocations::RemoteRevocations;
use gantry_gateway::service::{GatewayService, ServiceFeatures};
use gantry_gateway::transport::{ClientTls, ClientTlsFiles};
use gantry_gateway::{Gateway, HttpTransportConfig, Supergraph, SupergraphOptions, Transports};
use gantry_kit::client::TrustedProxies;
use gantry_kit::keys::{PublicKey, SigningKey, jwks};
use gantry_kit::revocation::{self, Revocations};
use gantry_kit::server::{serve, shutdown_signal, with_common_layers, with_request_limits};

use super::BackgroundTasks;
use super::composition::compose_at_start;
use super::readiness::Readiness;
use crate::cli::{CommonArgs, GatewayArgs, GatewayOptions, SubgraphUrl};

/// The gateway's HTTP app: the GraphQL endpoint and playground, `/ready`, `/health`,
/// request ids and tracing, the JWKS when this process holds the signing key, and
/// `/metrics` — or, with `--metrics-listen`, `/metrics` apart, as the second router.
/// CORS sits outside the request limits, so a preflight is answered before any of them
/// counts it; the request id and tracing layers stay outermost, so preflights are logged.
pub fn http_app(
    common: &CommonArgs,
    service: Arc<GatewayService>,
    options: &GatewayOptions,
    readiness: Readiness,
    public_key: Option<PublicKey>,
) -> anyhow::Result<(Router, Option<Router>)> {
    let cors = options
        .cors
        .settings()
        .layer()
        .context("the CORS settings")?;
    let defaults = HttpSettings::default();
    let settings = HttpSettings {
        max_body_bytes: options.max_body_bytes,
        max_batch_size: options.max_batch_size,
        playground: PlaygroundSettings {
            enabled: options.playground,
            ..defaults.playground
        },
        trusted_proxies: common.trusted_proxies(TrustedProxies::none()),
        ..defaults
    };
    let readiness = readiness.with_redis(service.shared_state().cloned());
    let metrics = gantry_gateway::service::metrics_router(service.clone());
    let router = graphql_http::router(service, settings).merge(readiness.router());
    let (mut router, metrics) = super::place_metrics(common, router, metrics);
    if let Some(key) = public_key {
        let set = jwks(std::slice::from_ref(&key));
        router = router.route(JWKS_PATH, get(move || async move { Json(set.clone()) }));
    }
    // The gateway answers its own deadline, with the data that is complete.
    let router = with_request_limits(
        router,
        &common.server_limits(),
        options.max_body_bytes,
        false,
    );
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    Ok((with_common_layers(router), metrics))
}

/// Subgraph transports, wrapped for in-flight de-duplication and the entity cache when
/// they are on (the cache outside, so a hit skips the subgraph altogether).
pub fn deduplicated(transports: Transports, features: &ServiceFeatures) -> Transports {
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

/// What the gateway service adds around the request path, from the settings. Without
/// `REDIS_URL` shared state stays in this process; with it, shared state lives in Redis
/// only, also while Redis does not answer (then it is bypassed). A manifest that does not
/// load is an error.
pub async fn service_features(
    common: &CommonArgs,
    options: &GatewayOptions,
    all_in_one: bool,
) -> anyhow::Result<ServiceFeatures> {
    let mut features = ServiceFeatures {
        shared: super::shared_redis(
            options.redis_url.as_deref(),
            &options.redis_prefix,
            options.redis_timeout_ms,
        )?,
        max_concurrent_operations: options.concurrent_operations(),
        request_timeout: Some(common.server_limits().request_timeout),
        ..ServiceFeatures::default()
    };
    if features.shared.is_some() {
        tracing::info!("sharing state through Redis");
    }
    features.cache = CacheSettings {
        response_cache: options.response_cache_enabled(all_in_one),
        dedup_operations: options.dedup_operations,
        dedup_subgraph: options.dedup_subgraph,
        entity_cache: options.entity_cache,
        max_ttl: Duration::from_secs(options.response_cache_max_ttl_secs.max(1)),
        ..CacheSettings::default()
    };
    features.cache_backend = Some(CacheBackend::new(
        features.shared.clone(),
        features.cache.capacity,
        features.cache.max_ttl,
    ));
    tracing::info!(
        response_cache = features.cache.response_cache,
        entity_cache = features.cache.entity_cache,
        dedup_operations = features.cache.dedup_operations,
        dedup_subgraph = features.cache.dedup_subgraph,
        shared = features.shared.is_some(),
        max_concurrent_operations = features.max_concurrent_operations,
        "caching settings"
    );
    let defaults = PersistedSettings::default();
    let persisted = PersistedSettings {
        manifest: options.manifest.clone(),
        safelist: options.safelist,
        bypass_header: options.safelist_bypass_header.clone(),
        registration: options.apq_registration.unwrap_or(defaults.registration),
        max_registered_bytes: options
            .apq_max_bytes
            .unwrap_or(defaults.max_registered_bytes),
        registrations_per_hour: options
            .apq_registrations_per_hour
            .unwrap_or(defaults.registrations_per_hour),
        ..defaults
    };
    let rate_limits = RateLimitSettings {
        requests: options.rate_limit_requests,
        cost: options.rate_limit_cost,
        client_name_requests: options.rate_limit_client_name_requests,
        window: options
            .rate_limit_window_secs
            .map_or(RateLimitSettings::default().window, |secs| {
                Duration::from_secs(secs.max(1))
            }),
    };
    tracing::info!(?rate_limits, "rate limits");
    features.rate_limits = Arc::new(RateLimits::new(&rate_limits, features.shared.clone()));
    let persisted = PersistedQueries::new(persisted, features.shared.clone())
        .context("setting up persisted queries")?;
    features.persisted = Some(Arc::new(persisted));
    Ok(features)
}

/// The identity settings of `--auth-config`, or the defaults (Gantry's own tokens from
/// `Authorization`, no providers, no policies).
pub fn auth_config(options: &GatewayOptions) -> anyhow::Result<AuthConfig> {
    match &options.auth_config {
        Some(path) => AuthConfig::load(path).context("loading the identity settings"),
        None => Ok(AuthConfig::default()),
    }
}

/// `auth` with the identity providers and token source of `config`, and a task keeping
/// the providers' keys fresh. `client` makes the client that fetches their JWKS (only when
/// a provider is configured).
pub async fn with_identity_providers(
    auth: Authenticator,
    config: &AuthConfig,
    client: impl FnOnce() -> Result<reqwest::Client, reqwest::Error>,
    tasks: &mut BackgroundTasks,
) -> anyhow::Result<Arc<Authenticator>> {
    for provider in &config.providers {
        tracing::info!(
            provider = %provider.name,
            jwks_url = %provider.jwks_url,
            issuers = ?provider.issuers,
            "trusting the tokens of this identity provider"
        );
    }
    let auth = Arc::new(
        auth.with_config(config, client)
            .await
            .context("setting up the identity providers")?,
    );
    if !config.providers.is_empty() {
        let refreshing = auth.clone();
        tasks.spawn(move |stop| refreshing.keep_keys_fresh(stop));
    }
    Ok(auth)
}

pub use super::composition::compose_from;

/// The running gateway and the tasks beside it.
#[derive(Debug)]
pub struct GatewayApp {
    pub router: Router,
    /// `/metrics`, when it has a listener of its own (`--metrics-listen`).
    pub metrics: Option<Router>,
    pub tasks: BackgroundTasks,
}

pub async fn build(common: &CommonArgs, args: &GatewayArgs) -> anyhow::Result<GatewayApp> {
    let identity = auth_config(&args.gateway)?;
    let rules = Arc::new(match &args.headers_config {
        Some(path) => HeaderRules::load(path).context("loading the header rules")?,
        None => HeaderRules::default(),
    });
    let tls = ClientTls::load(&ClientTlsFiles {
        ca_file: args.tls_ca_file.clone(),
        client_cert: args.tls_client_cert.clone(),
        client_key: args.tls_client_key.clone(),
    })
    .context("loading the subgraph TLS certificates")?;
    let client = tls
        .apply(reqwest::Client::builder())
        .timeout(Duration::from_secs(10))
        .build()?;
    let probes = tls
        .apply(reqwest::Client::builder())
        .timeout(Duration::from_secs(2))
        .build()?;
    let jwks_client = {
        let tls = tls.clone();
        move || {
            tls.apply(reqwest::Client::builder())
                .timeout(Duration::from_secs(5))
                .build()
        }
    };
    let supergraph = match &args.supergraph {
        Some(path) => {
            let sdl = std::fs::read_to_string(path)
                .with_context(|| format!("reading the supergraph {}", path.display()))?;
            Supergraph::from_sdl(&sdl, SupergraphOptions::default())
                .with_context(|| format!("loading the supergraph {}", path.display()))?
        }
        None => compose_at_start(&client, &args.subgraph, common.startup_wait()).await?,
    };
    let keys = KeySource::choose(common, args, &supergraph)?;
    let config = args.gateway.gateway_config();
    let transport_config = HttpTransportConfig {
        request_timeout: Duration::from_millis(args.subgraph_timeout_ms.max(1)),
        max_in_flight: args.subgraph_max_in_flight,
        max_response_bytes: config.max_response_bytes,
        tls,
        ..HttpTransportConfig::default()
    };
    let mut features = service_features(common, &args.gateway, false).await?;
    features.header_rules = rules.clone();
    features.authorization = Arc::new(identity.authorization.clone());
    let transports = Transports::http(supergraph.subgraph_urls(), &transport_config)?
        .wrapped(|inner| Arc::new(HeaderRulesTransport::new(inner, rules.clone())));
    let gateway = Arc::new(Gateway::new(
        supergraph,
        deduplicated(transports, &features),
        config,
    ));

    let revocations = Revocations::default();
    let revocation_source = match supergraph_users_url(&gateway) {
        Some(url) => Some(RemoteRevocations::beside(&url)?),
        None => {
            tracing::warn!(
                "the supergraph has no `users` subgraph: ended sessions are refused only \
                 when their access tokens expire"
            );
            None
        }
    };
    let mut tasks = BackgroundTasks::default();
    let auth = with_identity_providers(
        keys.authenticator(common, revocations.clone()).await?,
        &identity,
        jwks_client,
        &mut tasks,
    )
    .await?;
    let service = Arc::new(GatewayService::new(gateway.clone(), auth, features));
    let readiness = Readiness::new()
        .with_client(probes)
        .with_gateway(gateway.clone())
        .with_subgraphs(&args.subgraph);

    if let Some(source) = revocation_source {
        tracing::info!(url = source.url(), "following revocations");
        tasks.spawn(move |stop| revocation::follow(revocations, source, stop));
    }
    if !args.subgraph.is_empty() {
        let (subgraphs, every) = (args.subgraph.clone(), args.recompose_interval_secs);
        let gateway = gateway.clone();
        tasks.spawn(move |stop| recompose(gateway, client, subgraphs, every, stop));
    }
    let (router, metrics) = http_app(common, service, &args.gateway, readiness, None)?;
    Ok(GatewayApp {
        router,
        metrics,
        tasks,
    })
}

/// Where a separate gateway gets the keys that verify access tokens. It never makes one up:
/// a key of its own would verify no token the users subgraph issued, and every signed-in
/// request would fail with `401`.
#[derive(Debug)]
enum KeySource {
    /// `GANTRY_JWT_PRIVATE_KEY(_FILE)`: the same key the users subgraph signs with.
    Configured,
    /// `--jwks-url`, or the `users` subgraph's `/.well-known/jwks.json` (its URL from
    /// `--subgraph users=…` or the supergraph's `join__Graph`).
    Jwks(String),
}

impl KeySource {
    fn choose(
        common: &CommonArgs,
        args: &GatewayArgs,
        supergraph: &Supergraph,
    ) -> anyhow::Result<Self> {
        if common.jwt_private_key.is_some() || common.jwt_private_key_file.is_some() {
            return Ok(Self::Configured);
        }
        if let Some(url) = &args.jwks_url {
            return Ok(Self::Jwks(url.clone()));
        }
        let users = supergraph.subgraph_urls().get(USERS_SUBGRAPH).context(
            "no way to verify access tokens: the supergraph has no `users` subgraph to take \
             the JWKS from; set --jwks-url (GANTRY_JWKS_URL) to the JWKS of the service that \
             issues them, or GANTRY_JWT_PRIVATE_KEY_FILE to its signing key",
        )?;
        let jwks = reqwest::Url::parse(users)
            .and_then(|url| url.join(JWKS_PATH))
            .with_context(|| format!("the users subgraph's URL `{users}` is not a URL"))?;
        Ok(Self::Jwks(jwks.to_string()))
    }

    async fn authenticator(
        self,
        common: &CommonArgs,
        revocations: Revocations,
    ) -> anyhow::Result<Authenticator> {
        match self {
            Self::Configured => {
                let key = SigningKey::load(&common.keys())?;
                Ok(Authenticator::with_keys(
                    &[key.public],
                    common.jwt(),
                    revocations,
                )?)
            }
            Self::Jwks(url) => {
                tracing::info!(%url, "verifying access tokens with the keys at this JWKS");
                Ok(Authenticator::with_jwks(url, common.jwt(), revocations).await?)
            }
        }
    }
}

/// The users subgraph's URL in the supergraph being served, where revocations are listed.
fn supergraph_users_url(gateway: &Gateway) -> Option<String> {
    gateway
        .supergraph()
        .subgraph_urls()
        .get(USERS_SUBGRAPH)
        .cloned()
}

/// The subgraph whose JWKS verifies tokens when nothing else is configured.
const USERS_SUBGRAPH: &str = "users";
/// Where the users subgraph serves its public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Composes again on SIGHUP and every `every_secs` seconds (0: SIGHUP only); swaps in a
/// changed supergraph, keeps the last good one when composition fails.
async fn recompose(
    gateway: Arc<Gateway>,
    client: reqwest::Client,
    subgraphs: Vec<SubgraphUrl>,
    every_secs: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let hangup_signal = async {
            #[cfg(unix)]
            if let Some(signal) = hangup.as_mut() {
                signal.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let tick = async {
            if every_secs == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(every_secs)).await;
        };
        let reason = tokio::select! {
            () = hangup_signal => "SIGHUP",
            () = tick => "interval",
            _ = stop.wait_for(|s| *s) => return,
        };
        match compose_from(&client, &subgraphs).await {
            Ok(supergraph) if supergraph.sdl() == gateway.supergraph().sdl() => {
                tracing::debug!(reason, "recomposed: the supergraph is unchanged");
            }
            Ok(supergraph) => {
                gateway.replace_supergraph(supergraph);
                tracing::info!(reason, "recomposed: serving the new supergraph");
            }
            Err(err) => {
                tracing::error!(reason, error = %err, "recomposition failed; keeping the last good supergraph");
            }
        }
    }
}

pub async fn run(common: &CommonArgs, args: GatewayArgs) -> anyhow::Result<()> {
    let mut app = build(common, &args).await?;
    super::serve_metrics(common, app.metrics.take(), &mut app.tasks).await?;
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "gateway serving the API at http://{address}/graphql");
    serve(
        listener,
        app.router,
        shutdown_signal(),
        &common.server_limits(),
    )
    .await?;
    app.tasks.stop().await;
    tracing::info!("stopped");
    Ok(())
}
