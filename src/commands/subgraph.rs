//! `gantry subgraph users|posts`: one subgraph on its own port, with `/health`, `/ready`
//! (its database, and Redis when the posts subgraph has one) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_gateway::cache::CacheInvalidator;
use gantry_kit::invalidation::Invalidations;
use gantry_kit::jwt::TokenVerifier;
use gantry_kit::keys::SigningKey;
use gantry_kit::revocation::{self, DatabaseRevocations, Revocations};
use gantry_kit::server::readiness::{DatabaseCheck, Readiness, ReplicaCheck};
use gantry_kit::server::{place_metrics, with_common_layers, with_request_limits};
use gantry_kit::shared::SharedState;
use gantry_posts::PostsSubgraph;
use gantry_users::UsersSubgraph;
use sea_orm::DatabaseConnection;

use super::{App, BackgroundTasks};
use crate::cli::{CommonArgs, SubgraphArgs, SubgraphName};

/// Builds the subgraph with migrations applied, routes and layers in place, and its
/// background tasks started. Only the users subgraph generates a signing key (into the
/// data dir) when none is configured; the posts subgraph waits for that one.
pub async fn build(common: &CommonArgs, args: &SubgraphArgs) -> anyhow::Result<App> {
    let name = args.name;
    let db = super::open_database(common).await?;
    let mut tasks = BackgroundTasks::default();
    let mut readiness = Readiness::new().with(Arc::new(DatabaseCheck(db.clone())));
    let router = match name {
        SubgraphName::Users => {
            let key = SigningKey::load(&common.keys())?;
            let shared = super::shared_redis(
                common,
                args.redis.redis_url.as_deref(),
                &args.redis.redis_prefix,
                args.redis.redis_timeout_ms,
            )?;
            readiness = readiness.with_redis(shared.clone());
            let config = gantry_users::UsersConfig {
                shared,
                revocations: follow_revocations(&mut tasks, &db),
                ..common.users()
            };
            UsersSubgraph::new(db, key, config, None)?.router()
        }
        SubgraphName::Posts => {
            let key =
                SigningKey::load_generated_elsewhere(&common.keys(), common.startup_wait()).await?;
            let verifier = Arc::new(
                TokenVerifier::new(std::slice::from_ref(&key.public), &common.jwt())?
                    .with_revocations(follow_revocations(&mut tasks, &db)),
            );
            let shared = super::shared_redis(
                common,
                args.redis.redis_url.as_deref(),
                &args.redis.redis_prefix,
                args.redis.redis_timeout_ms,
            )?;
            let reads = super::read_routing(common, db, shared.clone(), &mut tasks).await?;
            let posts = PostsSubgraph::with_reads(reads.clone(), verifier, common.posts());
            readiness = readiness
                .with_redis(shared.clone())
                .with(Arc::new(ReplicaCheck(reads)));
            let consumer = posts.account_deletion_consumer(None, invalidations(shared));
            tasks.spawn(|stop| consumer.run(stop));
            posts.router()
        }
    };
    // A subgraph's bodies (entity representations from the gateway) may be as large as
    // the whole budget of bytes in flight.
    let limits = common.server_limits();
    let router = with_request_limits(router, &limits, limits.body_bytes_in_flight, true);
    let (router, metrics) = place_metrics(
        router.merge(readiness.router()),
        gantry_kit::prometheus::router(None),
        common.server.metrics_listen,
    );
    Ok(App {
        router: with_common_layers(router),
        metrics,
        tasks,
        limits,
        tls: None,
    })
}

/// The revocations this subgraph refuses tokens of, read from its database every
/// [`revocation::POLL_EVERY`] (the users subgraph also adds the ones it writes at once).
fn follow_revocations(tasks: &mut BackgroundTasks, db: &DatabaseConnection) -> Revocations {
    let revocations = Revocations::default();
    let (list, source) = (revocations.clone(), DatabaseRevocations(db.clone()));
    tasks.spawn(move |stop| revocation::follow(list, source, stop));
    revocations
}

/// With the gateways' Redis, account deletions invalidate their shared response cache.
fn invalidations(shared: Option<SharedState>) -> Invalidations {
    match shared {
        Some(shared) => {
            tracing::info!("account deletions will invalidate the gateways' cache in Redis");
            Invalidations::new(Arc::new(CacheInvalidator::redis(
                shared,
                Duration::from_secs(300),
            )))
        }
        None => Invalidations::default(),
    }
}

pub async fn run(common: &CommonArgs, args: SubgraphArgs) -> anyhow::Result<()> {
    let app = build(common, &args).await?;
    let default_port = match args.name {
        SubgraphName::Users => 4001,
        SubgraphName::Posts => 4002,
    };
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], default_port)));
    let subgraph = args.name;
    super::run_server(common, app, listen, |address, scheme| {
        tracing::info!(%address, subgraph = ?subgraph, scheme, "subgraph listening");
    })
    .await
}
