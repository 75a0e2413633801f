//! External identity providers: each one trusts the keys of its JWKS for the tokens of its
//! issuers, with its audiences, algorithms and clock-skew leeway. Keys are fetched at
//! start, on a schedule, and again when a token names a key id not seen yet — at most once
//! per `min_refresh_interval_secs`, and once for every request waiting on the same fetch.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::Refusal;
use super::config::{AuthConfigError, ProviderSettings};

/// Why a JWKS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] reqwest::Error),
}

/// A verification key and the algorithm its JWK pins, if any.
struct Key {
    decoding: DecodingKey,
    algorithm: Option<Algorithm>,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`: used for tokens without one.
    unnamed: Vec<Arc<Key>>,
}

impl KeySet {
    /// Keeps the asymmetric keys a JWK describes; shared-secret (`oct`) and unusable keys
    /// are skipped.
    fn from_jwks(set: &JwkSet) -> Self {
        let mut keys = Self::default();
        for jwk in &set.keys {
            if matches!(
                jwk.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            ) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let algorithm = jwk.common.key_algorithm.and_then(signing_algorithm);
            let key = Arc::new(Key {
                decoding,
                algorithm,
            });
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.unnamed.push(key),
            }
        }
        keys
    }

    fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.unnamed.len() == 1 => self.unnamed.first().cloned(),
            None if self.unnamed.is_empty() && self.by_kid.len() == 1 => {
                self.by_kid.values().next().cloned()
            }
            None => None,
        }
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }
}

fn signing_algorithm(algorithm: KeyAlgorithm) -> Option<Algorithm> {
    Some(match algorithm {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A token an external provider vouched for.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) provider: Arc<str>,
    pub(crate) subject: String,
    pub(crate) scopes: BTreeSet<String>,
    pub(crate) claims: Map<String, Value>,
}

/// One configured provider and its current keys.
pub(crate) struct Provider {
    name: Arc<str>,
    issuers: Vec<String>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    subject_claim: String,
    scopes_claim: String,
    jwks_url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the keys were last fetched; held while a fetch runs, so requests meeting the
    /// same unknown key wait for that one fetch.
    fetched: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    pub(crate) refresh_every: Option<Duration>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuers", &self.issuers)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl Provider {
    pub(crate) fn new(
        settings: &ProviderSettings,
        client: reqwest::Client,
    ) -> Result<Self, AuthConfigError> {
        let algorithms = settings.parsed_algorithms()?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&settings.issuers);
        if settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&settings.audiences);
        }
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs;
        Ok(Self {
            name: Arc::from(settings.name.as_str()),
            issuers: settings.issuers.clone(),
            algorithms,
            validation,
            subject_claim: settings.subject_claim.clone(),
            scopes_claim: settings.scopes_claim.clone(),
            jwks_url: settings.jwks_url.clone(),
            client,
            keys: RwLock::new(Arc::default()),
            fetched: tokio::sync::Mutex::new(None),
            min_refresh: Duration::from_secs(settings.min_refresh_interval_secs),
            refresh_every: (settings.refresh_interval_secs > 0)
                .then(|| Duration::from_secs(settings.refresh_interval_secs)),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn issues(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|own| own == issuer)
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the JWKS now and replaces the keys.
    pub(crate) async fn refresh(&self) -> Result<(), JwksError> {
        let mut fetched = self.fetched.lock().await;
        self.fetch(&mut fetched).await
    }

    async fn fetch(&self, fetched: &mut Option<Instant>) -> Result<(), JwksError> {
        *fetched = Some(Instant::now());
        let set: JwkSet = self
            .client
            .get(&self.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let keys = KeySet::from_jwks(&set);
        tracing::info!(provider = %self.name, url = %self.jwks_url, keys = keys.len(), "fetched the JWKS");
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    /// The key for `kid`, fetching the JWKS again when it is unknown and the last fetch is
    /// old enough.
    async fn key(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        if let Some(key) = self.current().find(kid) {
            return Some(key);
        }
        let mut fetched = self.fetched.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(key) = self.current().find(kid) {
            return Some(key);
        }
        if fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return None;
        }
        if let Err(err) = self.fetch(&mut fetched).await {
            tracing::warn!(provider = %self.name, error = %err, "refreshing the JWKS failed");
        }
        self.current().find(kid)
    }

    /// Checks a token whose `iss` this provider issues.
    pub(crate) async fn verify(&self, token: &str, header: &Header) -> Result<Verified, Refusal> {
        if !self.algorithms.contains(&header.alg) {
            return Err(Refusal::AlgorithmNotAllowed);
        }
        let key = self
            .key(header.kid.as_deref())
            .await
            .ok_or(Refusal::UnknownKey)?;
        if key.algorithm.is_some_and(|pinned| pinned != header.alg) {
            return Err(Refusal::AlgorithmNotAllowed);
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => Refusal::Expired,
                ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
                ErrorKind::InvalidAudience => Refusal::WrongAudience,
                ErrorKind::InvalidSignature => Refusal::BadSignature,
                ErrorKind::InvalidAlgorithm => Refusal::AlgorithmNotAllowed,
                _ => Refusal::Malformed,
            })?;
        let subject = match claims.get(&self.subject_claim) {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            Some(Value::Number(subject)) => subject.to_string(),
            _ => return Err(Refusal::NoSubject),
        };
        let scopes = scopes_in(claims.get(&self.scopes_claim));
        Ok(Verified {
            provider: self.name.clone(),
            subject,
            scopes,
            claims,
        })
    }
}

/// Scopes as providers write them: a space-separated string (OAuth 2 `scope`) or an array
/// of strings (Okta's `scp`, Entra ID's `roles`).
pub(crate) fn scopes_in(claim: Option<&Value>) -> BTreeSet<String> {
    match claim {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_are_read_from_a_space_separated_string_or_an_array() {
        let expected: BTreeSet<String> = ["posts:read", "posts:write"].map(String::from).into();
        assert_eq!(scopes_in(Some(&json!("posts:read  posts:write"))), expected);
        assert_eq!(
            scopes_in(Some(&json!(["posts:read", "posts:write", 3]))),
            expected
        );
        assert!(scopes_in(Some(&json!(12))).is_empty());
        assert!(scopes_in(None).is_empty());
    }

    #[test]
    fn shared_secret_keys_in_a_jwks_are_never_used() {
        let set: JwkSet = serde_json::from_value(json!({ "keys": [
            { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
        ]}))
        .unwrap();
        assert_eq!(KeySet::from_jwks(&set).len(), 0);
    }
}
