//! Who is asking. Access tokens are issued by the users subgraph and verified by every
//! process that accepts them (the gateway, both subgraphs), so what a token is, which keys
//! sign it, which tokens stopped working early and who a verified token stands for live
//! here, apart from any database or GraphQL server: the gateway links this crate without
//! linking an ORM.
//!
//! # Layout
//! - [`keys`]: the Ed25519 signing key, from configuration or generated once into the data
//!   dir, and the public JWKS.
//! - [`jwt`]: access-token claims, issuing them, and their verification (issuer, audience,
//!   expiry, `kid`, revocations).
//! - [`revocation`]: ended sessions and deleted accounts, whose tokens every verifier
//!   refuses, and following them from wherever they are written.
//! - [`viewer`]: the viewer read from the `Authorization` header, and the [`viewer::Caller`]
//!   the gateway hands a subgraph it calls in-process.
//! - [`client`]: the client's address, through trusted proxies only.

pub mod client;
pub mod jwt;
pub mod keys;
pub mod revocation;
pub mod viewer;

pub use viewer::{Viewer, ViewerState};
