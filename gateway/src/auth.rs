//! Authentication at the gateway: the access token is verified once, here, before any
//! subgraph is asked. A token that is present but bad (malformed, unknown key, `alg: none`
//! or an algorithm not allowed, expired beyond the leeway, wrong issuer or audience) fails
//! the request with `UNAUTHENTICATED`; no token means an anonymous viewer, and operations
//! that need none work.
//!
//! Gantry's own tokens (issuer `GANTRY_JWT_ISSUER`, EdDSA) are checked with keys from
//! configuration or from the users subgraph's JWKS, refetched when a token names a key
//! this gateway has not seen (at most once per [`JWKS_REFRESH_INTERVAL`], so forged `kid`s
//! cannot flood the users subgraph). A token whose session has ended or whose account was
//! deleted is refused like an expired one: every verifier checks the one set of
//! [`Revocations`] the process keeps current. Tokens of other issuers go to the configured
//! identity provider of that issuer ([`providers`]), if any.
//!
//! What the subgraphs see: a Gantry token is forwarded as `Authorization: Bearer …` (also
//! when it came in a cookie), and in-process subgraphs get the viewer it names. An external
//! identity is known to the gateway only: Gantry's subgraphs trust Gantry's tokens alone,
//! so to them the request is anonymous; its claims reach subgraphs through header rules
//! (`insert: { name, from_claim }`), and the gateway's authorization directives see them.
//!
//! # Layout
//!
//! - [`config`]: the `--auth-config` file.
//! - [`token`]: where the token is read (header and prefix, or cookie).
//! - [`providers`]: external providers, their JWKS and what their tokens say.

pub mod config;
pub mod providers;
mod token;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use gantry_identity::jwt::{AccessClaims, JwtSettings, TokenError, TokenVerifier};
use gantry_identity::keys::{JwkSet, PublicKey};
use gantry_identity::revocation::Revocations;
use gantry_identity::viewer::{Viewer, ViewerState};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use crate::caller::Identity;

use self::config::{AuthConfig, AuthConfigError};
use self::providers::{Provider, Verified};
use self::token::{Presented, TokenSource};

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

/// Why a token was refused. Every variant is `UNAUTHENTICATED` to the client, with this
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    #[error("the access token's signature is invalid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued by someone else")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the access token's signature algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the access token names no subject")]
    NoSubject,
    #[error("the session has ended; sign in again")]
    Revoked,
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Malformed => Self::Malformed,
            TokenError::UnknownKey => Self::UnknownKey,
            TokenError::BadSignature => Self::BadSignature,
            TokenError::Expired => Self::Expired,
            TokenError::WrongIssuer => Self::WrongIssuer,
            TokenError::WrongAudience => Self::WrongAudience,
            TokenError::Revoked => Self::Revoked,
        }
    }
}

impl Identity {
    fn gantry(claims: &AccessClaims, token: &str) -> Self {
        Self {
            viewer: ViewerState::Authenticated(Viewer {
                user_id: claims.sub,
                session_id: claims.sid,
            }),
            gantry_token: Some(Arc::from(token)),
            claims: Arc::new(match serde_json::to_value(claims) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            }),
            scopes: Arc::default(),
            key: Some(claims.sub),
        }
    }

    fn external(verified: Verified) -> Self {
        let digest = Sha256::new()
            .chain_update(verified.provider.as_bytes())
            .chain_update([0])
            .chain_update(verified.subject.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self {
            viewer: ViewerState::Anonymous,
            gantry_token: None,
            claims: Arc::new(verified.claims),
            scopes: Arc::new(verified.scopes),
            key: Some(uuid::Builder::from_custom_bytes(bytes).into_uuid()),
        }
    }
}

/// The part of a token read before its signature is checked, to choose who checks it.
#[derive(serde::Deserialize)]
struct Issuer {
    iss: Option<String>,
}

/// Verifies access tokens for the gateway.
#[derive(Debug)]
pub struct Authenticator {
    verifier: RwLock<Arc<TokenVerifier>>,
    settings: JwtSettings,
    source: KeySource,
    revocations: Revocations,
    token: TokenSource,
    gantry_tokens: bool,
    providers: Vec<Arc<Provider>>,
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
            token: TokenSource::default(),
            gantry_tokens: true,
            providers: Vec::new(),
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
            token: TokenSource::default(),
            gantry_tokens: true,
            providers: Vec::new(),
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

    /// Adds the token source, the external identity providers (their keys fetched now;
    /// a provider that does not answer yet is asked again when a token arrives) and
    /// whether Gantry's own tokens count, from the identity settings.
    /// `client` makes the HTTP client that fetches the JWKS, only when a provider is
    /// configured.
    pub async fn with_config(
        mut self,
        config: &AuthConfig,
        client: impl FnOnce() -> Result<reqwest::Client, reqwest::Error>,
    ) -> Result<Self, AuthConfigError> {
        self.token = TokenSource::new(&config.token);
        self.gantry_tokens = config.gantry_tokens;
        if config.providers.is_empty() {
            return Ok(self);
        }
        let client = client().map_err(AuthConfigError::Client)?;
        for settings in &config.providers {
            if self.gantry_tokens && settings.issuers.contains(&self.settings.issuer) {
                return Err(AuthConfigError::DuplicateIssuer(
                    self.settings.issuer.clone(),
                ));
            }
            let provider = Provider::new(settings, client.clone())?;
            if let Err(err) = provider.refresh().await {
                tracing::warn!(provider = provider.name(), error = %err, "could not fetch the JWKS yet; will retry when a token arrives");
            }
            self.providers.push(Arc::new(provider));
        }
        Ok(self)
    }

    /// Fetches every provider's JWKS on its schedule until `stop`.
    pub async fn keep_keys_fresh(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let scheduled: Vec<_> = self
            .providers
            .iter()
            .filter_map(|p| p.refresh_every.map(|every| (p.clone(), every)))
            .collect();
        if scheduled.is_empty() {
            return;
        }
        let refreshers = scheduled.into_iter().map(|(provider, every)| async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = provider.refresh().await {
                    tracing::warn!(provider = provider.name(), error = %err, "the scheduled JWKS refresh failed; keeping the keys");
                }
            }
        });
        tokio::select! {
            _ = futures::future::join_all(refreshers) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    /// Reads and verifies the request's token: `Ok` with the identity (anonymous when
    /// there is none), or why the token was refused.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Refusal> {
        let token = match self.token.read(headers) {
            Presented::Nothing => return Ok(Identity::default()),
            Presented::Malformed => return Err(Refusal::Malformed),
            Presented::Token(token) => token,
        };
        if self.providers.is_empty() {
            return self.verify_gantry(token).await;
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let issuer = jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(token)
            .map_err(|_| Refusal::Malformed)?
            .iss
            .ok_or(Refusal::WrongIssuer)?;
        if self.gantry_tokens && issuer == self.settings.issuer {
            return self.verify_gantry(token).await;
        }
        let provider = self
            .providers
            .iter()
            .find(|provider| provider.issues(&issuer))
            .ok_or(Refusal::WrongIssuer)?;
        provider
            .verify(token, &header)
            .await
            .map(Identity::external)
    }

    async fn verify_gantry(&self, token: &str) -> Result<Identity, Refusal> {
        if !self.gantry_tokens {
            return Err(Refusal::WrongIssuer);
        }
        let verified = self.current().verify(token);
        let verified = match verified {
            Err(TokenError::UnknownKey) if self.may_refresh() => match self.refresh().await {
                Ok(()) => self.current().verify(token),
                Err(err) => {
                    tracing::warn!(error = %err, "refreshing the JWKS failed");
                    verified
                }
            },
            other => other,
        };
        verified
            .map(|claims| Identity::gantry(&claims, token))
            .map_err(Refusal::from)
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
