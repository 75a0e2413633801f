//! `gantry gateway`: the gateway alone, in front of subgraphs reached over HTTP. With
//! `--subgraph NAME=URL` it fetches each subgraph's SDL and composes them, and composes
//! again on SIGHUP and every `--recompose-interval-secs`; a new supergraph replaces the old
//! one atomically (requests in flight finish on the one they started with), and a failed
//! composition keeps the last good one. With `--supergraph FILE` it serves that file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use gantry_gateway::auth::Authenticator;
use gantry_gateway::cache::CacheSettings;
use gantry_gateway::cache::backend::CacheBackend;
use gantry_gateway::cache::entities::EntityCacheTransport;
use gantry_gateway::graphql_http::{self, HttpSettings};
use gantry_gateway::persisted::{PersistedQueries, PersistedSettings};
use gantry_gateway::playground::PlaygroundSettings;
use gantry_gateway::service::{GatewayService, ServiceFeatures};
use gantry_gateway::shared::SharedState;
use gantry_gateway::{
    Gateway, GatewayConfig, HttpTransportConfig, SubgraphSdl, Supergraph, SupergraphOptions,
    Transports,
};
use gantry_kit::keys::{PublicKey, SigningKey, jwks};
use gantry_kit::server::{serve, shutdown_signal, with_common_layers};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use super::BackgroundTasks;
use crate::cli::{CommonArgs, GatewayArgs, GatewayOptions, SubgraphUrl};

/// What `/ready` checks: a supergraph is loaded, and the database (all-in-one) or every
/// subgraph's `/health` (separate processes) answers.
#[derive(Debug, Clone)]
pub struct Readiness {
    gateway: Arc<Gateway>,
    db: Option<DatabaseConnection>,
    subgraph_health: Vec<(String, String)>,
    client: reqwest::Client,
    /// Reported, never required: without Redis the gateway still serves (caches bypassed).
    redis: Option<SharedState>,
}

impl Readiness {
    pub fn new(
        gateway: Arc<Gateway>,
        db: Option<DatabaseConnection>,
        subgraphs: Vec<SubgraphUrl>,
    ) -> Self {
        let subgraph_health = subgraphs
            .into_iter()
            .map(|s| {
                let origin = s
                    .url
                    .find("://")
                    .and_then(|i| s.url[i + 3..].find('/').map(|j| &s.url[..i + 3 + j]));
                (s.name, format!("{}/health", origin.unwrap_or(&s.url)))
            })
            .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            gateway,
            db,
            subgraph_health,
            client,
            redis: None,
        }
    }

    /// Reports Redis as `ok` or `degraded` in the body; `/ready` stays 200 either way.
    pub fn with_redis(mut self, redis: Option<SharedState>) -> Self {
        self.redis = redis;
        self
    }

    async fn check(&self) -> (bool, Value) {
        let mut ready = true;
        let mut checks = serde_json::Map::new();
        let types = self.gateway.supergraph().subgraph_urls().len();
        checks.insert(
            "supergraph".into(),
            json!({ "status": "ok", "subgraphs": types }),
        );
        if let Some(db) = &self.db {
            let status = match db.ping().await {
                Ok(()) => json!({ "status": "ok" }),
                Err(err) => {
                    ready = false;
                    tracing::warn!(error = %err, "readiness: the database does not answer");
                    json!({ "status": "down" })
                }
            };
            checks.insert("database".into(), status);
        }
        for (name, url) in &self.subgraph_health {
            let up = matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success());
            ready &= up;
            checks.insert(
                format!("subgraph:{name}"),
                json!({ "status": if up { "ok" } else { "down" } }),
            );
        }
        if let Some(redis) = &self.redis {
            let up = redis.health().await;
            if !up {
                tracing::warn!("readiness: Redis does not answer; caches are bypassed");
            }
            checks.insert(
                "redis".into(),
                json!({ "status": if up { "ok" } else { "degraded" } }),
            );
        }
        (
            ready,
            json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks }),
        )
    }
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let (ready, body) = readiness.check().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// The gateway's HTTP app: the GraphQL endpoint and playground, `/ready`, `/health`,
/// request ids and tracing, and the JWKS when this process holds the signing key.
pub fn http_app(
    service: Arc<GatewayService>,
    options: &GatewayOptions,
    readiness: Readiness,
    public_key: Option<PublicKey>,
) -> Router {
    let defaults = HttpSettings::default();
    let settings = HttpSettings {
        max_body_bytes: options.max_body_bytes,
        max_batch_size: options.max_batch_size,
        playground: PlaygroundSettings {
            enabled: options.playground,
            ..defaults.playground
        },
        ..defaults
    };
    let readiness = readiness.with_redis(service.shared_state().cloned());
    let metrics_service = service.clone();
    let mut router = graphql_http::router(service, settings).merge(
        Router::new()
            .route("/ready", get(ready))
            .with_state(Arc::new(readiness))
            .route(
                "/metrics",
                get(move || async move { metrics_text(&metrics_service) }),
            ),
    );
    if let Some(key) = public_key {
        let set = jwks(std::slice::from_ref(&key));
        router = router.route(
            "/.well-known/jwks.json",
            get(move || async move { Json(set.clone()) }),
        );
    }
    with_common_layers(router)
}

/// `/metrics`: the Prometheus text format.
fn metrics_text(service: &GatewayService) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut text = service.caching().metrics().render(service.shared_state());
    for (name, value) in service.persisted().metrics() {
        text.push_str(&format!(
            "# TYPE gantry_{name}_total counter\ngantry_{name}_total {value}\n"
        ));
    }
    text.push_str(&gantry_kit::db::render_statements_metric());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
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
/// Redis (or when it cannot be reached at start) shared state stays in this process. A
/// manifest that does not load is an error.
pub async fn service_features(
    options: &GatewayOptions,
    all_in_one: bool,
) -> anyhow::Result<ServiceFeatures> {
    let mut features = ServiceFeatures {
        shared: super::connect_redis(
            options.redis_url.as_deref(),
            &options.redis_prefix,
            options.redis_timeout_ms,
            "shared state stays in this process",
        )
        .await,
        max_concurrent_operations: options.concurrent_operations(),
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
    let persisted = PersistedSettings {
        manifest: options.manifest.clone(),
        safelist: options.safelist,
        bypass_header: options.safelist_bypass_header.clone(),
        ..PersistedSettings::default()
    };
    let persisted = PersistedQueries::new(persisted, features.shared.clone())
        .context("setting up persisted queries")?;
    features.persisted = Some(Arc::new(persisted));
    Ok(features)
}

/// Fetches `_service { sdl }` from each subgraph and composes them.
pub async fn compose_from(
    client: &reqwest::Client,
    subgraphs: &[SubgraphUrl],
) -> anyhow::Result<Supergraph> {
    let mut sdls = Vec::with_capacity(subgraphs.len());
    for subgraph in subgraphs {
        sdls.push(SubgraphSdl {
            name: subgraph.name.clone(),
            url: subgraph.url.clone(),
            sdl: fetch_sdl(client, subgraph).await?,
        });
    }
    Supergraph::compose(&sdls, SupergraphOptions::default()).context("composing the subgraphs")
}

async fn fetch_sdl(client: &reqwest::Client, subgraph: &SubgraphUrl) -> anyhow::Result<String> {
    let what = || {
        format!(
            "fetching the SDL of subgraph `{}` from {}",
            subgraph.name, subgraph.url
        )
    };
    let body: Value = client
        .post(&subgraph.url)
        .json(&json!({ "query": "{ _service { sdl } }" }))
        .send()
        .await
        .with_context(what)?
        .error_for_status()
        .with_context(what)?
        .json()
        .await
        .with_context(what)?;
    body["data"]["_service"]["sdl"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: no SDL in the answer {body}", what()))
}

/// The running gateway and the tasks beside it.
#[derive(Debug)]
pub struct GatewayApp {
    pub router: Router,
    pub tasks: BackgroundTasks,
}

pub async fn build(common: &CommonArgs, args: &GatewayArgs) -> anyhow::Result<GatewayApp> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let supergraph = match &args.supergraph {
        Some(path) => {
            let sdl = std::fs::read_to_string(path)
                .with_context(|| format!("reading the supergraph {}", path.display()))?;
            Supergraph::from_sdl(&sdl, SupergraphOptions::default())
                .with_context(|| format!("loading the supergraph {}", path.display()))?
        }
        None => compose_from(&client, &args.subgraph).await?,
    };
    let transport_config = HttpTransportConfig {
        request_timeout: Duration::from_millis(args.subgraph_timeout_ms.max(1)),
        max_in_flight: args.subgraph_max_in_flight,
        ..HttpTransportConfig::default()
    };
    let features = service_features(&args.gateway, false).await?;
    let transports = Transports::http(supergraph.subgraph_urls(), &transport_config)?;
    let gateway = Arc::new(Gateway::new(
        supergraph,
        deduplicated(transports, &features),
        GatewayConfig {
            introspection: args.gateway.introspection,
        },
    ));

    let auth = Arc::new(authenticator(common, args).await?);
    let service = Arc::new(GatewayService::new(gateway.clone(), auth, features));
    let readiness = Readiness::new(gateway.clone(), None, args.subgraph.clone());

    let mut tasks = BackgroundTasks::default();
    if !args.subgraph.is_empty() {
        let (subgraphs, every) = (args.subgraph.clone(), args.recompose_interval_secs);
        let gateway = gateway.clone();
        tasks.spawn(move |stop| recompose(gateway, client, subgraphs, every, stop));
    }
    Ok(GatewayApp {
        router: http_app(service, &args.gateway, readiness, None),
        tasks,
    })
}

/// Keys come from configuration when a key is configured; otherwise from `--jwks-url`, or
/// the `users` subgraph's JWKS; otherwise from the key in the data dir.
async fn authenticator(common: &CommonArgs, args: &GatewayArgs) -> anyhow::Result<Authenticator> {
    if common.jwt_private_key.is_some() || common.jwt_private_key_file.is_some() {
        let key = SigningKey::load(&common.keys())?;
        return Ok(Authenticator::with_keys(&[key.public], common.jwt())?);
    }
    let users = args.subgraph.iter().find(|s| s.name == "users");
    let jwks_url = args.jwks_url.clone().or_else(|| {
        users.and_then(|u| {
            u.url
                .strip_suffix("/graphql")
                .map(|base| format!("{base}/.well-known/jwks.json"))
        })
    });
    match jwks_url {
        Some(url) => Ok(Authenticator::with_jwks(url, common.jwt()).await?),
        None => {
            let key = SigningKey::load(&common.keys())?;
            Ok(Authenticator::with_keys(&[key.public], common.jwt())?)
        }
    }
}

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
                tracing::error!(reason, error = %format!("{err:#}"), "recomposition failed; keeping the last good supergraph");
            }
        }
    }
}

pub async fn run(common: &CommonArgs, args: GatewayArgs) -> anyhow::Result<()> {
    let app = build(common, &args).await?;
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
        common.shutdown_grace(),
    )
    .await?;
    app.tasks.stop().await;
    tracing::info!("stopped");
    Ok(())
}
