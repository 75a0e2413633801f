//! Logging: human-readable lines on stderr, filtered by `RUST_LOG` (default `info,sqlx=warn`), or
//! JSON lines when `GANTRY_LOG_FORMAT=json`. Colour only when stderr is a terminal, so a log
//! file or a container log holds plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The log filter variable (tracing's own).
pub const LOG_FILTER_ENV: &str = "RUST_LOG";
/// `json` for JSON log lines; anything else (or nothing) for text.
pub const LOG_FORMAT_ENV: &str = "GANTRY_LOG_FORMAT";

/// Whether log lines are JSON.
pub fn json_logs() -> bool {
    std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if json_logs() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(err) = result {
        eprintln!("logging was already set up: {err}");
    }
}
