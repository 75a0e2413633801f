//! The GraphQL-over-HTTP layer and the playground, over real sockets, with a stub executor
//! (a tiny async-graphql schema) behind them. One binary for every file, to keep link time
//! down.

mod audit;
mod browser;
mod protocol;
mod support;
