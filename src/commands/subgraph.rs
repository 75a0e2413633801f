//! `gantry subgraph users|posts`: one subgraph on its own port, with `/health`, `/ready`
//! (its database, its read replica with `DATABASE_READ_URL`, and Redis when it has one)
//! and `/metrics`. Each applies only its own migrations, so each may have a database of
//! its own; events between them then travel through Redis Streams (see
//! [`super::events`]). Each routes its public reads to its own `DATABASE_READ_URL`, and
//! serves its subscriptions over WebSocket on `/graphql`, fed by its live events (see
//! [`super::live`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
    let scope = match name {
        SubgraphName::Users => gantry_migrations::Scope::Users,
        SubgraphName::Posts => gantry_migrations::Scope::Posts,
    };
    let db = super::open_database_in(common, scope).await?;
    let streams = super::events::stream_settings(args)?;
    let mut tasks = BackgroundTasks::default();
    let mut readiness = Readiness::new().with(Arc::new(DatabaseCheck(db.clone())));
    let live_redis = super::redis_settings(
        common,
        args.redis.redis_url.as_deref(),
        &args.redis.redis_prefix,
        args.redis.redis_timeout_ms,
    )?;
    let router = match name {
        SubgraphName::Users => {
            let key = SigningKey::load(&common.keys())?;
            let shared = super::shared_redis(
                common,
                args.redis.redis_url.as_deref(),
                &args.redis.redis_prefix,
                args.redis.redis_timeout_ms,
            )?;
            let reads = super::read_routing(common, db.clone(), shared.clone(), &mut tasks).await?;
            readiness = readiness
                .with_redis(shared.clone())
                .with(Arc::new(ReplicaCheck(reads.clone())));
            let config = gantry_users::UsersConfig {
                shared,
                revocations: follow_revocations(&mut tasks, &db),
                ..common.users()
            };
            let signal = match &streams {
                Some(streams) => Some(super::events::start_relay(
                    common, streams, &db, &mut tasks,
                )?),
                None => None,
            };
            let users = UsersSubgraph::with_reads(reads, key, config, signal)?;
            super::live::start(
                &mut tasks,
                gantry_users::live::SUBGRAPH,
                live_redis.as_ref(),
                users.live.bus.clone(),
                |channel| users.live_relay(channel),
            )?;
            users.router()
        }
        SubgraphName::Posts => {
            let key =
                SigningKey::load_generated_elsewhere(&common.keys(), common.startup_wait()).await?;
            let revocations = match args.events.users_url.as_deref() {
                Some(users_url) => follow_remote_revocations(common, &mut tasks, users_url)?,
                None => {
                    ensure_revocations_table(&db).await?;
                    follow_revocations(&mut tasks, &db)
                }
            };
            let verifier = Arc::new(
                TokenVerifier::new(std::slice::from_ref(&key.public), &common.jwt())?
                    .with_revocations(revocations),
            );
            let shared = super::shared_redis(
                common,
                args.redis.redis_url.as_deref(),
                &args.redis.redis_prefix,
                args.redis.redis_timeout_ms,
            )?;
            let reads = super::read_routing(common, db.clone(), shared.clone(), &mut tasks).await?;
            let posts = PostsSubgraph::with_reads(reads.clone(), verifier, common.posts());
            readiness = readiness
                .with_redis(shared.clone())
                .with(Arc::new(ReplicaCheck(reads)));
            match streams {
                Some(streams) => {
                    super::events::start_account_consumer(
                        streams,
                        &db,
                        invalidations(shared),
                        &mut tasks,
                    )?;
                }
                None => {
                    let consumer = posts.account_deletion_consumer(None, invalidations(shared));
                    tasks.spawn(|stop| consumer.run(stop));
                }
            }
            super::live::start(
                &mut tasks,
                gantry_posts::live::SUBGRAPH,
                live_redis.as_ref(),
                posts.live.bus.clone(),
                |channel| posts.live_relay(channel),
            )?;
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

/// The revocations the users subgraph at `users_url` lists, read every
/// [`revocation::POLL_EVERY`] (a posts subgraph with a database of its own).
fn follow_remote_revocations(
    common: &CommonArgs,
    tasks: &mut BackgroundTasks,
    users_url: &str,
) -> anyhow::Result<Revocations> {
    use gantry_gateway::transport::{ClientTls, ClientTlsFiles};
    let tls = ClientTls::load(&ClientTlsFiles {
        ca_file: common.server.tls_ca_file.clone(),
        ..ClientTlsFiles::default()
    })
    .context("loading the CA file")?;
    let client = tls
        .apply(reqwest::Client::builder())
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let source = gantry_gateway::revocations::RemoteRevocations::beside(users_url, client)
        .with_context(|| format!("GANTRY_USERS_URL `{users_url}` is not usable"))?;
    tracing::info!(url = source.url(), "following revocations");
    let revocations = Revocations::default();
    let list = revocations.clone();
    tasks.spawn(move |stop| revocation::follow(list, source, stop));
    Ok(revocations)
}

/// A posts subgraph reads revocations from its database only where the users subgraph
/// writes them: refuse to start (rather than accept revoked tokens) when that table is
/// not there.
async fn ensure_revocations_table(db: &DatabaseConnection) -> anyhow::Result<()> {
    let manager = sea_orm_migration::SchemaManager::new(db);
    let present = manager.has_table("revocations").await.map_err(|err| {
        anyhow::anyhow!(
            "looking for the revocations table: {}",
            gantry_kit::db::describe(&err)
        )
    })?;
    anyhow::ensure!(
        present,
        "this database has no `revocations` table (the users subgraph's): give a posts \
         subgraph with a database of its own GANTRY_USERS_URL (the users subgraph's GraphQL \
         URL) so it follows revocations from there"
    );
    Ok(())
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
