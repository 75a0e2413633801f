//! `gantry serve`: the whole product in one process. Pending migrations are applied, both
//! subgraphs run in-process (called directly, no sockets), the gateway composes their SDLs
//! and serves the API, the playground, the JWKS, `/health` and `/ready`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use gantry_gateway::auth::Authenticator;
use gantry_gateway::service::GatewayService;
use gantry_gateway::{
    Gateway, InProcessTransport, SubgraphSdl, Supergraph, SupergraphOptions, Transports,
};
use gantry_kit::invalidation::Invalidations;
use gantry_kit::jwt::TokenVerifier;
use gantry_kit::keys::SigningKey;
use gantry_kit::outbox::OutboxSignal;
use gantry_kit::revocation::{self, DatabaseRevocations, Revocations};
use gantry_kit::server::{serve, shutdown_signal};
use gantry_posts::PostsSubgraph;
use gantry_users::UsersSubgraph;
use sea_orm::DatabaseConnection;

use super::BackgroundTasks;
use super::gateway::http_app;
use super::readiness::Readiness;
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
        shared: Option<gantry_gateway::shared::SharedState>,
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

    /// As [`InProcessSubgraphs::new`], with the posts subgraph's reads routed by `reads`
    /// (a read replica beside the primary).
    pub fn with_reads(
        common: &CommonArgs,
        reads: gantry_kit::reads::ReadRouting,
        key: SigningKey,
        signal: Option<OutboxSignal>,
        shared: Option<gantry_gateway::shared::SharedState>,
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
        let users = UsersSubgraph::new(db.clone(), key, config, signal)?;
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
}

fn service_sdl(response: &async_graphql::Response) -> anyhow::Result<String> {
    let json = serde_json::to_value(&response.data).context("reading a subgraph SDL")?;
    json["_service"]["sdl"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("a subgraph did not give its SDL: {:?}", response.errors))
}

/// The all-in-one app and the tasks beside it.
#[derive(Debug)]
pub struct ServeApp {
    pub router: Router,
    /// `/metrics`, when it has a listener of its own (`--metrics-listen`).
    pub metrics: Option<Router>,
    pub tasks: BackgroundTasks,
}

pub async fn build(common: &CommonArgs, args: &ServeArgs) -> anyhow::Result<ServeApp> {
    // The metrics recorder first: gauges the background tasks set from their first run on
    // (the read replica's state) must not go to no recorder while the rest starts.
    gantry_kit::prometheus::handle();
    let db = super::open_database(common).await?;
    let key = SigningKey::load(&common.keys())?;
    let signal = OutboxSignal::default();
    let mut features = super::gateway::service_features(common, &args.gateway, true).await?;
    let mut tasks = BackgroundTasks::default();
    let reads =
        super::read_routing(common, db.clone(), features.shared.clone(), &mut tasks).await?;
    let subgraphs = InProcessSubgraphs::with_reads(
        common,
        reads.clone(),
        key.clone(),
        Some(signal.clone()),
        features.shared.clone(),
    )?;

    let supergraph = subgraphs.supergraph().await?;
    let config = args.gateway.gateway_config();
    let transports = subgraphs.transports(config.max_response_bytes);
    let gateway = Arc::new(Gateway::new(
        supergraph,
        super::gateway::deduplicated(transports, &features),
        config,
    ));
    let identity = super::gateway::auth_config(&args.gateway)?;
    features.authorization = Arc::new(identity.authorization.clone());
    let jwks_client = || {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
    };
    let auth = super::gateway::with_identity_providers(
        Authenticator::with_keys(
            std::slice::from_ref(&key.public),
            common.jwt(),
            subgraphs.revocations.clone(),
        )?,
        &identity,
        jwks_client,
        &mut tasks,
    )
    .await?;
    let service = Arc::new(GatewayService::new(gateway.clone(), auth, features));

    // Account deletions clear what the caches hold about the entities they change.
    subgraphs.follow_revocations(&mut tasks);
    let invalidations = Invalidations::new(Arc::new(service.caching().invalidator()));
    let consumer = subgraphs
        .posts
        .account_deletion_consumer(Some(signal), invalidations);
    tasks.spawn(|stop| consumer.run(stop));
    let readiness = Readiness::new()
        .with_gateway(gateway)
        .with_database(db)
        .with_reads(reads);
    let (router, metrics) = http_app(
        common,
        service,
        &args.gateway,
        readiness,
        Some(key.public.clone()),
    )?;
    Ok(ServeApp {
        router,
        metrics,
        tasks,
    })
}

pub async fn run(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<()> {
    let mut app = build(common, &args).await?;
    super::serve_metrics(common, app.metrics.take(), &mut app.tasks).await?;
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "Gantry is serving the API at http://{address}/graphql");
    if args.gateway.playground {
        println!("Playground: http://{address}/");
    }
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
