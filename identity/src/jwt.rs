//! Access tokens: EdDSA-signed JWTs with a `kid`. Both subgraphs and the gateway verify
//! them the same way: known key, right issuer and audience, not expired.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{PublicKey, SigningKey};
use crate::revocation::Revocations;

/// What every token carries. `sid` names the session (refresh-token family) the token was
/// issued for, so "every other session" can be told apart from this one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
    pub aud: String,
}

/// Token settings shared by issuers and verifiers.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `GANTRY_JWT_ISSUER`, default `gantry`.
    pub issuer: String,
    /// `GANTRY_JWT_AUDIENCE`, default `gantry`.
    pub audience: String,
    /// `GANTRY_ACCESS_TOKEN_TTL_SECS`, default 900 (15 minutes).
    pub access_ttl: Duration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            issuer: "gantry".into(),
            audience: "gantry".into(),
            access_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a token was refused. Every variant is `UNAUTHENTICATED` to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    #[error("the access token's signature is invalid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was issued by someone else")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the session has ended; sign in again")]
    Revoked,
}

/// How many seconds past `exp` a token is still accepted (clock skew between processes).
pub const LEEWAY_SECS: i64 = 5;

/// Signs access tokens with the one signing key.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    key: SigningKey,
    settings: JwtSettings,
}

impl TokenSigner {
    pub fn new(key: SigningKey, settings: JwtSettings) -> Self {
        Self { key, settings }
    }

    pub fn ttl(&self) -> Duration {
        self.settings.access_ttl
    }

    /// Issues a token for `user_id` in session `session_id`.
    pub fn sign(
        &self,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            iat: now,
            exp: now + self.settings.access_ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.public.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key.encoding)
    }
}

/// How many accepted tokens a verifier remembers, and for how long at most.
const VERIFIED_CAPACITY: u64 = 10_000;
const VERIFIED_TTL: Duration = Duration::from_secs(5 * 60);

/// Verifies access tokens against a set of trusted public keys.
///
/// A client sends the same token with every request until it expires, and each process a
/// request passes through (gateway, then each subgraph) verifies it: tokens already
/// accepted are remembered with their claims, so an Ed25519 signature check (tens of
/// microseconds, ~2 % of the gateway's CPU under the signed-in feed) runs once per token
/// and process instead of once per request. A remembered token is still refused once it
/// expires; a new set of keys comes with a new verifier and so forgets them all.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    verified: moka::sync::Cache<Arc<str>, AccessClaims>,
    revocations: Revocations,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(public_keys: &[PublicKey], settings: &JwtSettings) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for key in public_keys {
            keys.insert(key.kid.clone(), DecodingKey::from_ed_components(&key.x)?);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS as u64;
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CAPACITY)
            .time_to_live(VERIFIED_TTL)
            .build();
        Ok(Self {
            keys,
            validation,
            verified,
            revocations: Revocations::default(),
        })
    }

    /// Refuses the tokens of the sessions and accounts in `revocations` (shared with the
    /// rest of the process, and kept up to date beside it).
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// Whether a token signed with `kid` could be checked here.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The token's claims, if it is valid and its session and account have not ended.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = self.verify_unrevoked(token)?;
        if self.revocations.refuses(claims.sub, claims.sid) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn verify_unrevoked(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            if claims.exp < now - self.validation.leeway as i64 {
                self.verified.invalidate(token);
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let claims = self.verify_signed(token)?;
        self.verified.insert(Arc::from(token), claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySettings;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    fn key() -> (tempfile::TempDir, SigningKey) {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = KeySettings {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let key = SigningKey::load(&settings).expect("key");
        (dir, key)
    }

    #[test]
    fn a_signed_token_verifies_and_names_its_user_and_session() {
        let (_dir, key) = key();
        let settings = JwtSettings::default();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&key.public), &settings).expect("verifier");
        let signer = TokenSigner::new(key, settings);
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let claims = verifier
            .verify(&signer.sign(user, session).expect("signed"))
            .expect("valid");
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn a_remembered_token_still_needs_its_exact_signature() {
        let (_dir, key) = key();
        let settings = JwtSettings::default();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&key.public), &settings).expect("verifier");
        let token = TokenSigner::new(key, settings)
            .sign(Uuid::now_v7(), Uuid::now_v7())
            .expect("signed");
        let first = verifier.verify(&token).expect("valid");
        assert_eq!(verifier.verify(&token), Ok(first), "remembered");

        let (head, signature) = token.rsplit_once('.').expect("three parts");
        let mut other = signature.as_bytes().to_vec();
        other[0] = if other[0] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{head}.{}", String::from_utf8(other).expect("ascii"));
        assert_eq!(verifier.verify(&tampered), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        let (_dir, key) = key();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&key.public), &JwtSettings::default())
                .expect("verifier");
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            iat: now - 900,
            exp: now - 10,
            jti: Uuid::now_v7(),
            iss: "gantry".into(),
            aud: "gantry".into(),
        };
        // As if it had been accepted while it was still valid.
        verifier
            .verified
            .insert(Arc::from("remembered.token.text"), claims);
        assert_eq!(
            verifier.verify("remembered.token.text"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verifier.verify("remembered.token.text"),
            Err(TokenError::Malformed),
            "forgotten once refused, and then checked from scratch"
        );
    }

    #[test]
    fn a_token_of_an_ended_session_is_refused_even_once_remembered() {
        use crate::revocation::{Ended, Revocation, Revocations};
        let (_dir, key) = key();
        let settings = JwtSettings::default();
        let revocations = Revocations::default();
        let verifier = TokenVerifier::new(std::slice::from_ref(&key.public), &settings)
            .expect("verifier")
            .with_revocations(revocations.clone());
        let signer = TokenSigner::new(key, settings);
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let token = signer.sign(user, session).expect("signed");
        let other = signer.sign(user, Uuid::now_v7()).expect("signed");
        verifier.verify(&token).expect("valid before");

        revocations.add(&[Revocation {
            seq: 1,
            ended: Ended::Session(session),
            expires_at: chrono::Utc::now().timestamp() + 900,
        }]);
        assert_eq!(verifier.verify(&token), Err(TokenError::Revoked));
        assert!(
            verifier.verify(&other).is_ok(),
            "another session of the same user"
        );
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let (_d1, ours) = key();
        let (_d2, theirs) = key();
        let settings = JwtSettings::default();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&ours.public), &settings).expect("verifier");
        let forged = TokenSigner::new(theirs, settings)
            .sign(Uuid::now_v7(), Uuid::now_v7())
            .expect("signed");
        assert_eq!(verifier.verify(&forged), Err(TokenError::UnknownKey));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let (_dir, key) = key();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&key.public), &JwtSettings::default())
                .expect("verifier");
        let header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, key.public.kid));
        let body = URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        assert_eq!(
            verifier.verify(&format!("{header}.{body}.")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let (_dir, key) = key();
        let verifier =
            TokenVerifier::new(std::slice::from_ref(&key.public), &JwtSettings::default())
                .expect("verifier");
        let other = JwtSettings {
            audience: "elsewhere".into(),
            ..Default::default()
        };
        let token = TokenSigner::new(key, other)
            .sign(Uuid::now_v7(), Uuid::now_v7())
            .expect("signed");
        assert_eq!(verifier.verify(&token), Err(TokenError::WrongAudience));
    }
}
