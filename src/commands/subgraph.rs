//! `gantry subgraph users|posts`: one subgraph on its own port.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use gantry_kit::keys::SigningKey;
use gantry_kit::server::{serve, shutdown_signal, with_common_layers};
use gantry_users::UsersSubgraph;

use crate::cli::{CommonArgs, SubgraphArgs, SubgraphName};

/// The subgraph's whole HTTP app: migrations applied, routes and layers in place.
pub async fn build(common: &CommonArgs, name: SubgraphName) -> anyhow::Result<Router> {
    let db = super::open_database(common).await?;
    let key = SigningKey::load(&common.keys())?;
    let router = match name {
        SubgraphName::Users => UsersSubgraph::new(db, key, common.users())?.router(),
        SubgraphName::Posts => {
            anyhow::bail!("the posts subgraph is not available in this build yet")
        }
    };
    Ok(with_common_layers(router))
}

pub async fn run(common: &CommonArgs, args: SubgraphArgs) -> anyhow::Result<()> {
    let app = build(common, args.name).await?;
    let default_port = match args.name {
        SubgraphName::Users => 4001,
        SubgraphName::Posts => 4002,
    };
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], default_port)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, subgraph = ?args.name, "subgraph listening");
    serve(listener, app, shutdown_signal(), common.shutdown_grace()).await?;
    tracing::info!("stopped");
    Ok(())
}
