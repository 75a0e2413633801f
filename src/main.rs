//! `gantry`: one binary for every shape of the product. With no command it runs
//! `gantry serve`.

use gantry::cli::SettingsError;

/// mimalloc rather than the system allocator: request handling allocates many small,
/// short-lived values across threads, where glibc's malloc showed up at the top of the
/// profile and kept freed memory in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit status of settings that cannot be used, as for any other usage error.
const USAGE: u8 = 2;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match gantry::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // clap prints its own (usage errors, `--help`, `--version`) and picks the status.
        Err(SettingsError::CommandLine(err)) => err.exit(),
        Err(err) => {
            // Logged like any fatal error (a JSON line when logs are JSON), so set up first.
            let _telemetry = gantry::telemetry::init(None, "gantry");
            gantry::fatal::report(&err.into());
            return std::process::ExitCode::from(USAGE);
        }
    };
    let _telemetry = gantry::telemetry::init(cli.otlp_endpoint(), cli.service_name());
    match gantry::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            gantry::fatal::report(&err);
            std::process::ExitCode::FAILURE
        }
    }
}
