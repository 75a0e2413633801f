//! End-to-end tests: real servers on port 0, real databases (a fresh SQLite file or a
//! fresh PostgreSQL database per test), spoken to over HTTP. One binary for all of them.

#![allow(clippy::unwrap_used)]

mod accounts;
mod authorization;
mod batching;
mod browser;
mod caching;
mod configuration;
mod cors;
mod databases;
mod defer;
mod demand;
mod deploy;
mod e2e;
mod edge;
mod federation;
mod feed;
mod gateway;
mod gateway_subscriptions;
mod header_rules;
mod helpers;
mod hostile;
mod identity;
mod live_updates;
mod observability;
mod operators;
mod override_labels;
mod partial_data;
mod partitioning;
mod persisted;
mod pgbouncer;
mod posts;
mod read_replica;
mod replicas;
mod schema;
mod subscriptions;
mod timelines;
mod tls;
mod users;
