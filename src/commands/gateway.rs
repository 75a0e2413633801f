//! `gantry gateway`: the gateway alone, in front of subgraphs reached over HTTP. The
//! arguments become [`GatewaySettings`]; [`GatewayApp::builder`] does the rest (composition
//! and recomposition, JWKS discovery, revocations, readiness, metrics).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use gantry_gateway::Supergraph;
use gantry_gateway::app::composition::CompositionError;
use gantry_gateway::app::{
    GatewayApp, GatewaySettings, SubgraphUrl as GatewaySubgraphUrl, SupergraphSource, TokenKeys,
};
use gantry_gateway::auth::config::AuthConfig;
use gantry_gateway::cache::CacheSettings;
use gantry_gateway::graphql_http::HttpSettings;
use gantry_gateway::header_rules::HeaderRules;
use gantry_gateway::persisted::PersistedSettings;
use gantry_gateway::playground::PlaygroundSettings;
use gantry_gateway::rate_limit::RateLimitSettings;
use gantry_gateway::transport::{ClientTls, ClientTlsFiles, HttpTransportConfig};
use gantry_identity::client::TrustedProxies;
use gantry_identity::keys::SigningKey;

use super::App;
use crate::cli::{CommonArgs, GatewayArgs, GatewayOptions, SubgraphUrl};

pub use gantry_gateway::app::JWKS_PATH;

/// The gateway settings every server command that runs a gateway shares (`serve` and
/// `gateway`). `all_in_one` turns the response cache on by default.
pub fn settings(
    common: &CommonArgs,
    options: &GatewayOptions,
    all_in_one: bool,
) -> anyhow::Result<GatewaySettings> {
    let http_defaults = HttpSettings::default();
    let persisted_defaults = PersistedSettings::default();
    Ok(GatewaySettings {
        gateway: options.gateway_config(),
        http: HttpSettings {
            max_body_bytes: options.max_body_bytes,
            max_batch_size: options.max_batch_size,
            playground: PlaygroundSettings {
                enabled: options.playground,
                ..http_defaults.playground
            },
            trusted_proxies: common.trusted_proxies(TrustedProxies::none()),
            ..http_defaults
        },
        cors: options.cors.settings(),
        cache: CacheSettings {
            response_cache: options.response_cache_enabled(all_in_one),
            dedup_operations: options.dedup_operations,
            dedup_subgraph: options.dedup_subgraph,
            entity_cache: options.entity_cache,
            max_ttl: Duration::from_secs(options.response_cache_max_ttl_secs.max(1)),
            ..CacheSettings::default()
        },
        persisted: PersistedSettings {
            manifest: options.manifest.clone(),
            safelist: options.safelist,
            bypass_header: options.safelist_bypass_header.clone(),
            registration: options
                .apq_registration
                .unwrap_or(persisted_defaults.registration),
            max_registered_bytes: options
                .apq_max_bytes
                .unwrap_or(persisted_defaults.max_registered_bytes),
            registrations_per_hour: options
                .apq_registrations_per_hour
                .unwrap_or(persisted_defaults.registrations_per_hour),
            ..persisted_defaults
        },
        rate_limits: RateLimitSettings {
            requests: options.rate_limit_requests,
            cost: options.rate_limit_cost,
            client_name_requests: options.rate_limit_client_name_requests,
            window: options
                .rate_limit_window_secs
                .map_or(RateLimitSettings::default().window, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
        },
        redis: super::redis_settings(
            common,
            options.redis.redis_url.as_deref(),
            &options.redis.redis_prefix,
            options.redis.redis_timeout_ms,
        )?,
        override_labels_header: options.override_labels_header.clone(),
        max_concurrent_operations: options.concurrent_operations(),
        server: common.server_limits(),
        metrics_listen: common.server.metrics_listen,
        jwt: common.jwt(),
        identity: auth_config(options)?,
        startup_wait: common.startup_wait(),
        subscriptions: options.subscription_settings(),
        ..GatewaySettings::default()
    })
}

/// The identity settings of `--auth-config`, or the defaults (Gantry's own tokens from
/// `Authorization`, no providers, no policies).
pub fn auth_config(options: &GatewayOptions) -> anyhow::Result<AuthConfig> {
    match &options.auth_config {
        Some(path) => AuthConfig::load(path).context("loading the identity settings"),
        None => Ok(AuthConfig::default()),
    }
}

/// The gateway's app: settings from the arguments, the supergraph from `--supergraph` or
/// `--subgraph`, tokens verified with the configured key, `--jwks-url`, or the `users`
/// subgraph's JWKS.
pub async fn build(common: &CommonArgs, args: &GatewayArgs) -> anyhow::Result<App> {
    let mut settings = settings(common, &args.gateway, false)?;
    if let Some(path) = &args.headers_config {
        settings.header_rules = HeaderRules::load(path).context("loading the header rules")?;
    }
    let tls = ClientTls::load(&ClientTlsFiles {
        ca_file: common.server.tls_ca_file.clone(),
        client_cert: args.tls_client_cert.clone(),
        client_key: args.tls_client_key.clone(),
    })
    .context("loading the subgraph TLS certificates")?;
    settings.subgraph_http = HttpTransportConfig {
        request_timeout: Duration::from_millis(args.subgraph_timeout_ms.max(1)),
        max_in_flight: args.subgraph_max_in_flight,
        tls,
        http2_prior_knowledge: args.subgraph_http2,
        ..HttpTransportConfig::default()
    };
    settings.recompose_every = (args.recompose_interval_secs > 0)
        .then(|| Duration::from_secs(args.recompose_interval_secs));
    let supergraph = match &args.supergraph {
        Some(path) => SupergraphSource::File(path.clone()),
        None => SupergraphSource::Subgraphs(subgraph_urls(&args.subgraph)),
    };
    let keys = if common.jwt_private_key.is_some() || common.jwt_private_key_file.is_some() {
        TokenKeys::Keys(vec![SigningKey::load(&common.keys())?.public])
    } else if let Some(url) = &args.jwks_url {
        TokenKeys::Jwks(url.clone())
    } else {
        TokenKeys::UsersSubgraphJwks
    };
    let gateway = GatewayApp::builder(settings)
        .supergraph(supergraph)
        .token_keys(keys)
        .build()
        .await?;
    Ok(gateway.app)
}

/// The subgraphs' URLs as the gateway crate takes them.
fn subgraph_urls(subgraphs: &[SubgraphUrl]) -> Vec<GatewaySubgraphUrl> {
    subgraphs
        .iter()
        .map(|s| GatewaySubgraphUrl::new(s.name.clone(), s.url.clone()))
        .collect()
}

/// Fetches each subgraph's SDL and composes them (what `gantry compose` prints).
pub async fn compose_from(
    client: &reqwest::Client,
    subgraphs: &[SubgraphUrl],
) -> Result<Supergraph, CompositionError> {
    gantry_gateway::app::composition::compose_from(client, &subgraph_urls(subgraphs)).await
}

pub async fn run(common: &CommonArgs, args: GatewayArgs) -> anyhow::Result<()> {
    let app = build(common, &args).await?;
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    super::run_server(common, app, listen, |address, scheme| {
        tracing::info!(%address, "gateway serving the API at {scheme}://{address}/graphql");
    })
    .await
}
