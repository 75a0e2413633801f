//! `gantry`: one binary for every shape of the product. With no command it runs
//! `gantry serve`.

use clap::Parser;

/// mimalloc rather than the system allocator: request handling allocates many small,
/// short-lived values across threads, where glibc's malloc showed up at the top of the
/// profile and kept freed memory in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = gantry::cli::Cli::parse();
    let _telemetry = gantry::telemetry::init(
        cli.common.server.otlp_endpoint.as_deref(),
        cli.service_name(),
    );
    match gantry::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            gantry::fatal::report(&err);
            std::process::ExitCode::FAILURE
        }
    }
}
