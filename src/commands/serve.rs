//! `gantry serve`: the whole product in one process.

use std::net::SocketAddr;

use anyhow::Context;
use gantry_kit::server::{serve, shutdown_signal};

use crate::cli::{CommonArgs, ServeArgs, SubgraphName};

pub async fn run(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<()> {
    // Until the gateway lands, the all-in-one server is the users subgraph.
    let app = super::subgraph::build(common, SubgraphName::Users).await?;
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving the users API at http://{address}/graphql");
    serve(listener, app, shutdown_signal(), common.shutdown_grace()).await?;
    tracing::info!("stopped");
    Ok(())
}
