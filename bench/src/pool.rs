//! The data a run draws from: signed-in users with their tokens, and the ids a real client
//! would ask for. `prepare` writes it once per deployment; `load` reads it and keeps each
//! user's tokens current as `login` and `refreshSession` rotate them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The pool file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolFile {
    /// The password every seeded user shares, for `login` during `mixed`.
    pub password: String,
    pub users: Vec<PooledUser>,
    /// Most-liked posts first: the hot content a mobile app keeps asking for.
    pub popular_posts: Vec<String>,
    /// Most-followed users first.
    pub popular_users: Vec<String>,
    /// A few hundred authors with posts, in no order: `federation-stress` spreads over them.
    pub stress_users: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PooledUser {
    pub id: String,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl PoolFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the pool {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing the pool {}", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing the pool {}", path.display()))
    }
}

/// One signed-in user during a run. The refresh token is taken out while a refresh is in
/// flight, so two requests never present the same one (reuse revokes the whole session).
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub username: String,
    access: Mutex<Arc<str>>,
    refresh: Mutex<Option<String>>,
}

impl Session {
    pub fn new(user: &PooledUser) -> Self {
        Self {
            id: user.id.clone(),
            username: user.username.clone(),
            access: Mutex::new(Arc::from(user.access_token.as_str())),
            // Empty when a refresh did not come back last time: log in instead.
            refresh: Mutex::new(Some(user.refresh_token.clone()).filter(|t| !t.is_empty())),
        }
    }

    /// The current pair, for writing the pool back (an empty refresh token if none is held).
    pub fn snapshot(&self, user: &PooledUser) -> PooledUser {
        let access = self
            .access
            .lock()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let refresh = self
            .refresh
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_default();
        PooledUser {
            access_token: access,
            refresh_token: refresh,
            ..user.clone()
        }
    }

    pub fn bearer(&self) -> String {
        let token = self
            .access
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        format!("Bearer {token}")
    }

    /// The refresh token, unless a refresh with it is already in flight.
    pub fn take_refresh(&self) -> Option<String> {
        self.refresh.lock().ok().and_then(|mut r| r.take())
    }

    /// Stores the pair a `login` or `refreshSession` answered with.
    pub fn store(&self, access: &str, refresh: &str) {
        if let Ok(mut a) = self.access.lock() {
            *a = Arc::from(access);
        }
        if let Ok(mut r) = self.refresh.lock() {
            *r = Some(refresh.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> PooledUser {
        PooledUser {
            id: "u1".into(),
            username: "s1_u1".into(),
            access_token: "a1".into(),
            refresh_token: "r1".into(),
        }
    }

    #[test]
    fn a_refresh_token_is_handed_out_once_until_a_new_pair_is_stored() {
        let session = Session::new(&user());
        assert_eq!(session.take_refresh().as_deref(), Some("r1"));
        assert_eq!(session.take_refresh(), None);
        session.store("a2", "r2");
        assert_eq!(session.bearer(), "Bearer a2");
        assert_eq!(session.take_refresh().as_deref(), Some("r2"));
        let saved = session.snapshot(&user());
        assert_eq!(
            (saved.access_token.as_str(), saved.refresh_token.as_str()),
            ("a2", "")
        );
        assert_eq!(Session::new(&saved).take_refresh(), None);
    }
}
