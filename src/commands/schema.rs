//! `gantry schema`: prints the client-facing API schema, composed from the two subgraphs
//! exactly as `gantry serve` composes them. `schema.graphql` is this output.

use gantry_kit::db::DatabaseSettings;
use gantry_kit::keys::SigningKey;

use super::serve::InProcessSubgraphs;
use crate::cli::CommonArgs;

/// The API schema's SDL. Building the subgraphs needs no data: an empty in-memory
/// database and a throwaway key stand in.
pub async fn api_sdl(common: &CommonArgs) -> anyhow::Result<String> {
    let db = gantry_kit::db::connect(&DatabaseSettings {
        url: "sqlite::memory:".into(),
        max_connections: Some(1),
    })
    .await?;
    let subgraphs = InProcessSubgraphs::new(common, db, SigningKey::ephemeral()?, None, None)?;
    let supergraph = subgraphs.supergraph().await?;
    Ok(supergraph.api_sdl())
}

pub async fn run(common: &CommonArgs) -> anyhow::Result<()> {
    print!("{}", api_sdl(common).await?);
    Ok(())
}
