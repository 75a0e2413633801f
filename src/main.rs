//! `gantry`: one binary for every shape of the product. With no command it runs
//! `gantry serve`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = gantry::cli::Cli::parse();
    gantry::telemetry::init();
    match gantry::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
