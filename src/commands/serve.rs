//! `gantry serve`: the whole product in one process. Pending migrations are applied, both
//! subgraphs run in-process (called directly, no sockets), the gateway composes their SDLs
//! and serves the API, the playground, the JWKS, `/health` and `/ready` (with the
//! database), built by the gateway's builder. Both subgraphs' live events are relayed
//! to their subscriptions in this process (through Redis pub/sub with `REDIS_URL`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use gantry_gateway::app::{GatewayApp, RevocationFeed, SupergraphSource, TokenKeys};
use gantry_gateway::subscriptions::InProcessSubscribers;
use gantry_gateway::{InProcessTransport, SubgraphSdl, Supergraph, SupergraphOptions, Transports};
use gantry_kit::invalidation::Invalidations;
use gantry_kit::jwt::TokenVerifier;
use gantry_kit::keys::SigningKey;
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::revocation::{self, DatabaseRevocations, Revocations};
use gantry_kit::server::readiness::{DatabaseCheck, ReplicaCheck};
use gantry_posts::PostsSubgraph;
use gantry_users::UsersSubgraph;
use sea_orm::DatabaseConnection;

use super::{App, BackgroundTasks};
use crate::cli::{CommonArgs, ServeArgs};

/// Both subgraphs over one database, wired for in-process use.
pub struct InProcessSubgraphs {
    pub users: UsersSubgraph,
    pub posts: PostsSubgraph,
    /// The revocations every verifier of this process refuses: the users subgraph adds
    /// its own at once; [`InProcessSubgraphs::follow_revocations`] reads other replicas'.
    pub revocations: Revocations,
    db: DatabaseConnection,
}

impl InProcessSubgraphs {
    pub fn new(
        common: &CommonArgs,
        db: DatabaseConnection,
        key: SigningKey,
        signal: Option<OutboxSignal>,
        shared: Option<gantry_kit::shared::SharedState>,
    ) -> anyhow::Result<Self> {
        let revocations = Revocations::default();
        let verifier = Arc::new(
            TokenVerifier::new(std::slice::from_ref(&key.public), &common.jwt())?
                .with_revocations(revocations.clone()),
        );
        let config = gantry_users::UsersConfig {
            shared,
            revocations: revocations.clone(),
            ..common.users()
        };
        let users = UsersSubgraph::new(db.clone(), key, config, signal)?;
        let posts = PostsSubgraph::new(db.clone(), verifier, common.posts());
        Ok(Self {
            users,
            posts,
            revocations,
            db,
        })
    }

    /// As [`InProcessSubgraphs::new`], with both subgraphs' reads routed by `reads` (a
    /// read replica beside the primary). They share its read-your-writes marks: a write in
    /// either keeps the writer's reads in both on the primary.
    pub fn with_reads(
        common: &CommonArgs,
        reads: gantry_kit::reads::ReadRouting,
        key: SigningKey,
        signal: Option<OutboxSignal>,
        shared: Option<gantry_kit::shared::SharedState>,
    ) -> anyhow::Result<Self> {
        let db = reads.primary().clone();
        let revocations = Revocations::default();
        let verifier = Arc::new(
            TokenVerifier::new(std::slice::from_ref(&key.public), &common.jwt())?
                .with_revocations(revocations.clone()),
        );
        let config = gantry_users::UsersConfig {
            shared,
            revocations: revocations.clone(),
            ..common.users()
        };
        let users = UsersSubgraph::with_reads(reads.clone(), key, config, signal)?;
        let posts = PostsSubgraph::with_reads(reads, verifier, common.posts());
        Ok(Self {
            users,
            posts,
            revocations,
            db,
        })
    }

    /// Reads the revocations other processes on this database write (replicas of this
    /// server), every [`gantry_kit::revocation::POLL_EVERY`].
    pub fn follow_revocations(&self, tasks: &mut BackgroundTasks) {
        let (revocations, source) = (
            self.revocations.clone(),
            DatabaseRevocations(self.db.clone()),
        );
        tasks.spawn(move |stop| revocation::follow(revocations, source, stop));
    }

    /// Relays both subgraphs' live events to their subscriptions in this process, or,
    /// with `REDIS_URL`, through Redis pub/sub to every replica's (see [`super::live`]).
    pub fn start_live(
        &self,
        common: &CommonArgs,
        redis: &crate::cli::RedisArgs,
        tasks: &mut BackgroundTasks,
    ) -> anyhow::Result<()> {
        let settings = super::redis_settings(
            common,
            redis.redis_url.as_deref(),
            &redis.redis_prefix,
            redis.redis_timeout_ms,
        )?;
        super::live::start(
            tasks,
            gantry_users::live::SUBGRAPH,
            settings.as_ref(),
            self.users.live.bus.clone(),
            |channel| self.users.live_relay(channel),
        )?;
        super::live::start(
            tasks,
            gantry_posts::live::SUBGRAPH,
            settings.as_ref(),
            self.posts.live.bus.clone(),
            |channel| self.posts.live_relay(channel),
        )
    }

    /// Composes the two subgraphs' SDLs into the supergraph the gateway plans over.
    pub async fn supergraph(&self) -> anyhow::Result<Supergraph> {
        let users = service_sdl(&self.users.schema.execute("{ _service { sdl } }").await)?;
        let posts = service_sdl(&self.posts.schema.execute("{ _service { sdl } }").await)?;
        let subgraphs = [
            SubgraphSdl {
                name: "users".into(),
                url: "http://in-process.invalid/users".into(),
                sdl: users,
            },
            SubgraphSdl {
                name: "posts".into(),
                url: "http://in-process.invalid/posts".into(),
                sdl: posts,
            },
        ];
        Supergraph::compose(&subgraphs, SupergraphOptions::default())
            .context("composing the subgraphs")
    }

    /// Both subgraphs in this process, their answers capped at `max_response_bytes`.
    pub fn transports(&self, max_response_bytes: usize) -> Transports {
        Transports::new()
            .with(
                "users",
                Arc::new(
                    InProcessTransport::new(self.users.schema.clone())
                        .with_max_response_bytes(max_response_bytes),
                ),
            )
            .with(
                "posts",
                Arc::new(
                    InProcessTransport::new(self.posts.schema.clone())
                        .with_max_response_bytes(max_response_bytes),
                ),
            )
            .measured()
    }

    /// Both subgraphs, for subscriptions that reach them without a socket.
    pub fn subscribers(&self) -> InProcessSubscribers {
        let mut subscribers = InProcessSubscribers::new();
        subscribers.insert(
            "users".into(),
            Arc::new(InProcessTransport::new(self.users.schema.clone())),
        );
        subscribers.insert(
            "posts".into(),
            Arc::new(InProcessTransport::new(self.posts.schema.clone())),
        );
        subscribers
    }
}

fn service_sdl(response: &async_graphql::Response) -> anyhow::Result<String> {
    let json = serde_json::to_value(&response.data).context("reading a subgraph SDL")?;
    json["_service"]["sdl"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("a subgraph did not give its SDL: {:?}", response.errors))
}

pub async fn build(common: &CommonArgs, args: &ServeArgs) -> anyhow::Result<App> {
    // The metrics recorder first: gauges the background tasks set from their first run on
    // (the read replica's state) must not go to no recorder while the rest starts.
    gantry_kit::prometheus::handle();
    let db = super::open_database(common).await?;
    let key = SigningKey::load(&common.keys())?;
    let signal = OutboxSignal::default();
    let settings = super::gateway::settings(common, &args.gateway, true)?;
    let shared = super::shared_redis(
        common,
        args.gateway.redis.redis_url.as_deref(),
        &args.gateway.redis.redis_prefix,
        args.gateway.redis.redis_timeout_ms,
    )?;
    let mut tasks = BackgroundTasks::default();
    let reads = super::read_routing(common, db.clone(), shared.clone(), &mut tasks).await?;
    let subgraphs = InProcessSubgraphs::with_reads(
        common,
        reads.clone(),
        key.clone(),
        Some(signal.clone()),
        shared.clone(),
    )?;
    subgraphs.follow_revocations(&mut tasks);

    let supergraph = subgraphs.supergraph().await?;
    let transports = subgraphs.transports(settings.gateway.max_response_bytes);
    let gateway = GatewayApp::builder(settings)
        .supergraph(SupergraphSource::Composed {
            supergraph: Box::new(supergraph),
            transports,
        })
        .token_keys(TokenKeys::Keys(vec![key.public.clone()]))
        .in_process_subscribers(subgraphs.subscribers())
        .revocations(RevocationFeed::Shared(subgraphs.revocations.clone()))
        .shared_state(shared)
        .publish_jwks(key.public.clone())
        .readiness_check(Arc::new(DatabaseCheck(db)))
        .readiness_check(Arc::new(ReplicaCheck(reads)))
        .background_tasks(tasks)
        .build()
        .await?;

    // Account deletions clear what the caches hold about the entities they change.
    let mut app = gateway.app;
    subgraphs.start_live(common, &args.gateway.redis, &mut app.tasks)?;
    let invalidations = Invalidations::new(Arc::new(gateway.service.caching().invalidator()));
    let consumer = subgraphs
        .posts
        .account_deletion_consumer(Some(signal), invalidations);
    app.tasks.spawn(|stop| consumer.run(stop));
    Ok(app)
}

pub async fn run(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<()> {
    let app = build(common, &args).await?;
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    let playground = args.gateway.playground;
    super::run_server(common, app, listen, |address, scheme| {
        tracing::info!(%address, "Gantry is serving the API at {scheme}://{address}/graphql");
        if playground {
            println!("Playground: {scheme}://{address}/");
        }
    })
    .await
}
