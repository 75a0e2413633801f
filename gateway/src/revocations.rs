//! Revocations for a gateway, which has no database: it asks the users subgraph's
//! `/revocations` for the ones after the last it saw, every second (through
//! [`gantry_identity::revocation::follow`]), and its [`crate::auth::Authenticator`] refuses the
//! tokens they name. The users subgraph's URL comes from the same place as its JWKS (the
//! supergraph's `join__Graph`, or `--subgraph users=…`).

use gantry_identity::revocation::{Revocation, RevocationError, RevocationSource};

/// The path the users subgraph lists revocations at.
pub const REVOCATIONS_PATH: &str = "/revocations";

/// The users subgraph's revocation list, over HTTP.
#[derive(Debug, Clone)]
pub struct RemoteRevocations {
    url: reqwest::Url,
    client: reqwest::Client,
}

#[derive(Debug, serde::Deserialize)]
struct Page {
    revocations: Vec<Revocation>,
}

impl RemoteRevocations {
    /// The list served beside the users subgraph at `users_url` (its GraphQL endpoint),
    /// asked with `client` (which carries the TLS settings and a timeout).
    pub fn beside(users_url: &str, client: reqwest::Client) -> Result<Self, RevocationError> {
        let remote = |cause: String| RevocationError::Remote {
            url: users_url.to_owned(),
            cause,
        };
        let url = reqwest::Url::parse(users_url)
            .and_then(|url| url.join(REVOCATIONS_PATH))
            .map_err(|err| remote(err.to_string()))?;
        Ok(Self { url, client })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn fetch(&self, cursor: i64) -> Result<Vec<Revocation>, reqwest::Error> {
        let page: Page = self
            .client
            .get(self.url.clone())
            .query(&[("after", cursor)])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page.revocations)
    }
}

impl RevocationSource for RemoteRevocations {
    async fn after(&self, cursor: i64) -> Result<Vec<Revocation>, RevocationError> {
        self.fetch(cursor)
            .await
            .map_err(|err| RevocationError::Remote {
                url: self.url.to_string(),
                cause: err.to_string(),
            })
    }
}
