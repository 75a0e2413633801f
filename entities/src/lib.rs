//! SeaORM entities for every table Gantry owns. Only persistence shapes live here: the
//! subgraphs convert these `Model`s into their own GraphQL types, so a column can change
//! without leaking into the public API.
//!
//! # Layout
//! - [`user`]: accounts (username and email unique case-insensitively).
//! - [`session`]: a refresh-token family; revoking it ends the whole sign-in.
//! - [`refresh_token`]: one issued refresh token (stored hashed), rotated on every use.
//! - [`outbox_event`]: domain events written in the same transaction as the change they
//!   describe, delivered to other subgraphs at least once.
//! - [`outbox_offset`]: how far each consumer has read the outbox.
//! - [`revocation`]: ended sessions and deleted accounts, for every token verifier.
//! - [`post`], [`comment`], [`like`], [`follow`]: the posts subgraph's content.
//! - [`known_account`]: the accounts the posts subgraph knows of, with tombstones.
//! - [`timeline`], [`timeline_head`], [`feed_pulled_author`]: the home feed's fanned-out
//!   timelines, their bookkeeping, and the authors read at feed time instead.

pub mod comment;
pub mod feed_pulled_author;
pub mod follow;
pub mod known_account;
pub mod like;
pub mod outbox_event;
pub mod outbox_offset;
pub mod post;
pub mod refresh_token;
pub mod revocation;
pub mod session;
pub mod timeline;
pub mod timeline_head;
pub mod user;
