//! `gantry compose --subgraph NAME=URL ...`: prints the supergraph SDL.

use std::time::Duration;

use crate::cli::ComposeArgs;

pub async fn run(args: ComposeArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let supergraph = super::gateway::compose_from(&client, &args.subgraph).await?;
    println!("{}", supergraph.sdl().trim_end());
    Ok(())
}
