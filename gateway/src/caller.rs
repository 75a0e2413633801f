//! Who is asking, as the gateway verified it: what authorization, header rules, rate limits
//! and private cache entries read. The `auth` module makes it from the request's token.

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_identity::viewer::ViewerState;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Who is asking, as the gateway verified it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// What in-process subgraphs are told: the viewer of a Gantry token; anonymous for
    /// everyone else.
    pub viewer: ViewerState,
    /// The Gantry token, forwarded to HTTP subgraphs as `Authorization: Bearer …`.
    pub gantry_token: Option<Arc<str>>,
    /// The token's verified claims (empty when anonymous): what `@policy` rules and
    /// header rules read.
    pub claims: Arc<Map<String, Value>>,
    /// The scopes `@requiresScopes` checks.
    pub scopes: Arc<BTreeSet<String>>,
    /// Tells users apart for rate limits and private cache entries: a Gantry user's id,
    /// or a key derived from an external provider and subject (never a Gantry user's).
    pub key: Option<Uuid>,
}

impl Identity {
    /// Whether a token was verified (`@authenticated` holds).
    pub fn is_authenticated(&self) -> bool {
        self.key.is_some()
    }
}
