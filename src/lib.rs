//! The `gantry` command: the CLI that wires the gateway, the subgraphs and the database
//! into each shape the product runs in. Thin by design: the work lives in the member
//! crates.
//!
//! # Layout
//! - [`cli`] — commands and the settings tree: flags, environment variables, the
//!   configuration file and `gantry config`.
//! - [`settings`] — turns those settings into each library's typed settings.
//! - [`commands`] — one module per command; each builds an app and serves it.
//! - [`seed`] — realistic, deterministic, idempotent demo and benchmark data.
//! - [`telemetry`] — logging.
//! - [`fatal`] — how a command that fails says why.

pub mod cli;
pub mod commands;
pub mod fatal;
pub mod seed;
pub mod settings;
pub mod telemetry;
