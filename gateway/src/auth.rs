//! Authentication at the gateway: the JWT in `Authorization` is verified once, here, before
//! any subgraph is asked. A token that is present but bad (malformed, unknown key,
//! `alg: none`, expired, wrong issuer or audience) fails the request with
//! `UNAUTHENTICATED`; no token means an anonymous viewer, and operations that need none
//! work. Keys come from configuration or from the users subgraph's JWKS, refetched when a
//! token names a key this gateway has not seen (at most once per
//! [`JWKS_REFRESH_INTERVAL`], so forged `kid`s cannot flood the users subgraph). A token
//! whose session has ended or whose account was deleted is refused like an expired one:
//! every verifier checks the one set of [`Revocations`] the process keeps current.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use gantry_identity::jwt::{JwtSettings, TokenError, TokenVerifier};
use gantry_identity::keys::{JwkSet, PublicKey};
use gantry_identity::revocation::Revocations;
use gantry_identity::viewer::ViewerState;

/// The least time between two JWKS fetches triggered by unknown key ids.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] reqwest::Error),
    #[error("a verification key is unusable: {0}")]
    Unusable(String),
}

fn verifier(
    keys: &[PublicKey],
    settings: &JwtSettings,
    revocations: &Revocations,
) -> Result<Arc<TokenVerifier>, KeyError> {
    TokenVerifier::new(keys, settings)
        .map(|verifier| Arc::new(verifier.with_revocations(revocations.clone())))
        .map_err(|err| KeyError::Unusable(format!("{err:#}")))
}

/// Where verification keys come from.
#[derive(Debug)]
enum KeySource {
    Fixed,
    Jwks {
        url: String,
        client: reqwest::Client,
        last_fetch: RwLock<Option<Instant>>,
    },
}

/// Verifies access tokens for the gateway.
#[derive(Debug)]
pub struct Authenticator {
    verifier: RwLock<Arc<TokenVerifier>>,
    settings: JwtSettings,
    source: KeySource,
    revocations: Revocations,
}

impl Authenticator {
    /// Trusts exactly `keys` (configuration, or the signing key in the all-in-one server).
    /// Tokens of the sessions and accounts in `revocations` are refused.
    pub fn with_keys(
        keys: &[PublicKey],
        settings: JwtSettings,
        revocations: Revocations,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            verifier: RwLock::new(verifier(keys, &settings, &revocations)?),
            settings,
            source: KeySource::Fixed,
            revocations,
        })
    }

    /// Trusts the keys published at `url`, fetched now and again on unknown key ids, with
    /// `client` (which carries the TLS settings: a private CA, a client certificate).
    pub async fn with_jwks(
        url: String,
        client: reqwest::Client,
        settings: JwtSettings,
        revocations: Revocations,
    ) -> Result<Self, KeyError> {
        let auth = Self {
            verifier: RwLock::new(verifier(&[], &settings, &revocations)?),
            settings,
            source: KeySource::Jwks {
                url,
                client,
                last_fetch: RwLock::new(None),
            },
            revocations,
        };
        if let Err(err) = auth.refresh().await {
            tracing::warn!(error = %err, "could not fetch the JWKS yet; will retry when a token arrives");
        }
        Ok(auth)
    }

    fn current(&self) -> Arc<TokenVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the viewer from the request headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> ViewerState {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return ViewerState::Anonymous;
        };
        let value = value.to_str().ok();
        let state = ViewerState::from_authorization(value, &self.current());
        if state == ViewerState::Rejected(TokenError::UnknownKey) && self.may_refresh() {
            match self.refresh().await {
                Ok(()) => return ViewerState::from_authorization(value, &self.current()),
                Err(err) => tracing::warn!(error = %err, "refreshing the JWKS failed"),
            }
        }
        state
    }

    fn may_refresh(&self) -> bool {
        match &self.source {
            KeySource::Fixed => false,
            KeySource::Jwks { last_fetch, .. } => last_fetch
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none_or(|at| at.elapsed() >= JWKS_REFRESH_INTERVAL),
        }
    }

    async fn refresh(&self) -> Result<(), KeyError> {
        let KeySource::Jwks {
            url,
            client,
            last_fetch,
        } = &self.source
        else {
            return Ok(());
        };
        *last_fetch.write().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let set: JwkSet = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let keys = PublicKey::from_jwks(&set);
        tracing::info!(url = %url, keys = keys.len(), "fetched the JWKS");
        let fresh = verifier(&keys, &self.settings, &self.revocations)?;
        *self
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}
