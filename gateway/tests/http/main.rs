//! The GraphQL-over-HTTP layer and the playground, over real sockets, with a stub executor
//! (a tiny async-graphql schema) behind them; the gateway built by operator code; and what
//! the gateway crate links. One binary for every file, to keep link time down.

mod audit;
mod browser;
mod builder;
mod defer;
mod dependencies;
mod event_streams;
mod protocol;
mod subscriptions;
mod support;
mod wss_upstreams;
