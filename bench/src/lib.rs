//! Load benchmarks for Gantry: realistic clients driven at a fixed arrival rate or as fast
//! as N connections allow, with the processes under test sampled and their `/metrics` read,
//! and a report per day. `bench/run` runs the whole matrix; see `bench/README.md`.
//!
//! # Layout
//! - [`cli`]: the command line (`load`, `prepare`, `sample`, `ceiling`, `subgraphs`,
//!   `compare-answers`, `subscriptions`, `report`) and running each.
//! - [`load`]: the open- and closed-loop drivers and how a response is classified.
//! - [`record`]: HDR latency histograms, outcomes by kind, and a run's JSON.
//! - [`scenario`]: the clients imitated (`mobile-reads`, `signed-in-feed`, `mixed`,
//!   `federation-stress`, `gateway-bound`, `ceiling`) and the operations they send.
//! - [`pool`]: the pool file of signed-in users and hot ids, and live token rotation.
//! - [`popularity`]: Zipf picks over ranked ids.
//! - [`prepare`]: signing seeded users in and reading hot ids from the database.
//! - [`ceiling`]: a bare handler answering fixed bytes, the HTTP ceiling.
//! - [`subgraphs`]: four in-memory federation subgraphs (accounts, products, reviews,
//!   inventory) for the gateway-bound comparison.
//! - [`answers`]: checking that gateways give the same answer to the deep query.
//! - [`watch`]: memory and CPU of processes, from `/proc`.
//! - [`prometheus`]: reading `/metrics` counters and their growth.
//! - [`report`]: the day's JSON and Markdown.
//! - [`side_by_side`]: the gateway-bound section: medians per gateway and their ratios.
//! - [`subscriptions`]: idle subscriptions held through the gateway, and event fan-out
//!   latency, over `graphql-transport-ws`.

pub mod answers;
pub mod ceiling;
pub mod cli;
pub mod load;
pub mod pool;
pub mod popularity;
pub mod prepare;
pub mod prometheus;
pub mod record;
pub mod report;
pub mod scenario;
pub mod side_by_side;
pub mod subgraphs;
pub mod subscriptions;
pub mod watch;
