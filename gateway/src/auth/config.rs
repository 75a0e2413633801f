//! The identity settings file (`--auth-config`, YAML or JSON): where the token is read,
//! whether Gantry's own tokens are accepted, the external identity providers, and the
//! authorization rules. Every default is written on its field.

use std::collections::BTreeMap;
use std::path::Path;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::authorization::AuthorizationSettings;

/// Why the identity settings were refused at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read the identity settings {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the identity settings are not valid YAML or JSON of the expected shape: {0}")]
    Syntax(#[from] serde_norway::Error),
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error("identity provider `{0}`: `issuers` needs at least one issuer")]
    NoIssuer(String),
    #[error("identity provider `{0}`: `jwks_url` must be an http(s) URL")]
    JwksUrl(String),
    #[error(
        "identity provider `{provider}`: algorithm {algorithm:?} is not one of RS256, RS384, \
         RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
    )]
    Algorithm { provider: String, algorithm: String },
    #[error("issuer {0:?} is named by more than one identity provider (or is Gantry's own)")]
    DuplicateIssuer(String),
    #[error("identity provider names must be unique: `{0}` is used twice")]
    DuplicateName(String),
    #[error("cannot make the HTTP client that fetches the JWKS: {0}")]
    Client(reqwest::Error),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the access token is read. Default: `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: TokenSourceSettings,
    /// Accept the tokens Gantry's users subgraph issues (issuer `GANTRY_JWT_ISSUER`).
    /// Default: true.
    #[serde(default = "yes")]
    pub gantry_tokens: bool,
    /// External identity providers (Auth0, Okta, Cognito, Entra ID, Keycloak, …), each
    /// with its JWKS, issuers and audiences. Default: none.
    #[serde(default)]
    pub providers: Vec<ProviderSettings>,
    /// What `@authenticated`, `@requiresScopes` and `@policy` need. Default: policies
    /// none (every `@policy` refused), unauthorized fields answered as `null`.
    #[serde(default)]
    pub authorization: AuthorizationSettings,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token: TokenSourceSettings::default(),
            gantry_tokens: true,
            providers: Vec::new(),
            authorization: AuthorizationSettings::default(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Where a request carries its access token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSourceSettings {
    /// The header holding the token. Default: `authorization`.
    #[serde(default = "default_header")]
    pub header: String,
    /// What precedes the token in the header, compared without regard to case (empty: the
    /// whole value is the token). Default: `"Bearer "`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A cookie read when the header is absent (web apps keeping the token in an
    /// `HttpOnly` cookie). Default: none.
    #[serde(default)]
    pub cookie: Option<String>,
}

impl Default for TokenSourceSettings {
    fn default() -> Self {
        Self {
            header: default_header(),
            prefix: default_prefix(),
            cookie: None,
        }
    }
}

fn default_header() -> String {
    "authorization".into()
}

fn default_prefix() -> String {
    "Bearer ".into()
}

/// One external identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// A name for logs and metrics. Required, unique.
    pub name: String,
    /// Where its public keys are published. Required.
    pub jwks_url: String,
    /// The `iss` values its tokens carry; a token is checked by the provider naming its
    /// issuer. Required, at least one.
    pub issuers: Vec<String>,
    /// The `aud` values accepted (any one). Default: none, and then `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Signature algorithms accepted. Default: `[RS256, ES256, EdDSA]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Seconds a token is still accepted past `exp` (and before `nbf`), for clock skew.
    /// Default: 60.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The claim that names the user. Default: `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim holding the scopes `@requiresScopes` checks: a space-separated string or
    /// an array of strings. Default: `scope`.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// Seconds between scheduled JWKS fetches (0: only on unknown `kid`). Default: 300.
    #[serde(default = "default_refresh")]
    pub refresh_interval_secs: u64,
    /// The least seconds between two fetches triggered by an unknown `kid`, so forged key
    /// ids cannot flood the provider. Default: 10.
    #[serde(default = "default_min_refresh")]
    pub min_refresh_interval_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}
fn default_leeway() -> u64 {
    60
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_scopes_claim() -> String {
    "scope".into()
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refresh() -> u64 {
    10
}

/// The asymmetric algorithms a provider may allow (shared secrets never leave a provider).
const ASYMMETRIC: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

impl ProviderSettings {
    /// The allowed algorithms, parsed.
    pub(crate) fn parsed_algorithms(&self) -> Result<Vec<Algorithm>, AuthConfigError> {
        self.algorithms
            .iter()
            .map(|name| {
                ASYMMETRIC
                    .iter()
                    .find(|(known, _)| known.eq_ignore_ascii_case(name.trim()))
                    .map(|(_, algorithm)| *algorithm)
                    .ok_or_else(|| AuthConfigError::Algorithm {
                        provider: self.name.clone(),
                        algorithm: name.clone(),
                    })
            })
            .collect()
    }
}

impl AuthConfig {
    /// Reads the file (YAML, or JSON, which YAML includes) and checks it.
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let config: Self = serde_norway::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), AuthConfigError> {
        axum::http::HeaderName::from_bytes(self.token.header.trim().as_bytes())
            .map_err(|_| AuthConfigError::HeaderName(self.token.header.clone()))?;
        let mut issuers = BTreeMap::new();
        let mut names = BTreeMap::new();
        for provider in &self.providers {
            if names.insert(provider.name.as_str(), ()).is_some() {
                return Err(AuthConfigError::DuplicateName(provider.name.clone()));
            }
            if provider.issuers.is_empty() {
                return Err(AuthConfigError::NoIssuer(provider.name.clone()));
            }
            if !(provider.jwks_url.starts_with("http://")
                || provider.jwks_url.starts_with("https://"))
            {
                return Err(AuthConfigError::JwksUrl(provider.name.clone()));
            }
            provider.parsed_algorithms()?;
            for issuer in &provider.issuers {
                if issuers.insert(issuer.as_str(), ()).is_some() {
                    return Err(AuthConfigError::DuplicateIssuer(issuer.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_keeps_gantrys_own_tokens_from_the_authorization_header() {
        let config = AuthConfig::parse("{}").unwrap();
        assert!(config.gantry_tokens);
        assert!(config.providers.is_empty());
        assert_eq!(config.token.header, "authorization");
        assert_eq!(config.token.prefix, "Bearer ");
    }

    #[test]
    fn a_provider_gets_the_documented_defaults() {
        let config = AuthConfig::parse(
            "providers: [{ name: okta, jwks_url: 'https://idp/keys', issuers: [https://idp] }]",
        )
        .unwrap();
        let provider = &config.providers[0];
        assert_eq!(
            provider.parsed_algorithms().unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(
            (provider.leeway_secs, provider.refresh_interval_secs),
            (60, 300)
        );
        assert_eq!(
            (
                provider.subject_claim.as_str(),
                provider.scopes_claim.as_str()
            ),
            ("sub", "scope")
        );
    }

    #[test]
    fn a_shared_secret_algorithm_is_refused() {
        let err = AuthConfig::parse(
            "providers: [{ name: a, jwks_url: 'https://idp/keys', issuers: [x], algorithms: [HS256] }]",
        )
        .unwrap_err();
        assert!(err.to_string().contains("HS256"), "{err}");
    }

    #[test]
    fn malformed_settings_are_refused() {
        for text in [
            "providers: [{ name: a, jwks_url: 'https://idp/keys', issuers: [] }]",
            "providers: [{ name: a, jwks_url: 'ftp://idp/keys', issuers: [x] }]",
            "providers: [{ name: a, jwks_url: 'https://k', issuers: [x] }, { name: b, jwks_url: 'https://k', issuers: [x] }]",
            "providers: [{ name: a, jwks_url: 'https://k', issuers: [x] }, { name: a, jwks_url: 'https://k', issuers: [y] }]",
            "token: { header: 'bad header' }",
            "provider: []",
        ] {
            assert!(AuthConfig::parse(text).is_err(), "{text}");
        }
    }
}
