//! Federation correctness beyond users/posts: tiny async-graphql subgraphs (in-memory data,
//! served over HTTP on port 0) composed into a supergraph, each case asserting the whole
//! client response written out from the GraphQL and federation semantics.
//!
//! # Layout
//!
//! - `harness`: serves the subgraphs, composes their SDLs, runs operations, counts requests.
//! - `keys`: composite keys, and several keys on one type.
//! - `requires`: `@requires`, including a required field with arguments.
//! - `provides`: `@provides` with `@external`.
//! - `shareable_override`: `@shareable` and `@override(from:)`.
//! - `inaccessible`: `@inaccessible` (validation, introspection, still usable by `@requires`).
//! - `abstract_types`: an interface and a union implemented across subgraphs.
//! - `interface_typename`: interface values with and without a concrete `__typename`.
//! - `interface_object`: `@interfaceObject`, resolvable and not, and values whose concrete
//!   type only the owning subgraph knows.
//! - `nulls_and_errors`: null entities in lists, errors in entity fetches, a subgraph down.
//! - `operations`: variables with defaults, `@skip` / `@include`, aliases.

mod abstract_types;
mod harness;
mod inaccessible;
mod interface_object;
mod interface_typename;
mod keys;
mod nulls_and_errors;
mod operations;
mod provides;
mod requires;
mod shareable_override;
