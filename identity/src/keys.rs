//! The Ed25519 key that signs access tokens. It comes from configuration (a PKCS#8 PEM, as
//! text or a file); with none configured it is generated once into the data dir, so a
//! restart keeps sessions valid and every process sharing the data dir trusts the same
//! tokens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};

pub use jsonwebtoken::jwk::JwkSet;

/// Name of the generated key file inside the data dir.
pub const GENERATED_KEY_FILE: &str = "jwt-ed25519.pem";

/// Where the signing key comes from.
#[derive(Clone, Default)]
pub struct KeySettings {
    /// `GANTRY_JWT_PRIVATE_KEY`: the PKCS#8 PEM itself. Never printed.
    pub private_key_pem: Option<String>,
    /// `GANTRY_JWT_PRIVATE_KEY_FILE`: a file holding the PKCS#8 PEM.
    pub private_key_file: Option<PathBuf>,
    /// `GANTRY_DATA_DIR`: where a generated key is kept when neither of the above is set.
    pub data_dir: PathBuf,
}

impl std::fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySettings")
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("private_key_file", &self.private_key_file)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// A public key as verifiers need it: its id and the raw key, base64url-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub x: String,
}

impl PublicKey {
    fn from_raw(raw: &[u8; 32]) -> anyhow::Result<Self> {
        let x = URL_SAFE_NO_PAD.encode(raw);
        let kid = okp_jwk(None, &x).thumbprint(ThumbprintHash::SHA256)?;
        Ok(Self { kid, x })
    }

    /// The key as a JWK, with `kid`, `alg: EdDSA` and `use: sig`.
    pub fn to_jwk(&self) -> Jwk {
        okp_jwk(Some(self.kid.clone()), &self.x)
    }

    /// Reads the Ed25519 keys of a JWKS document, skipping keys of other kinds.
    pub fn from_jwks(set: &JwkSet) -> Vec<Self> {
        set.keys
            .iter()
            .filter_map(|jwk| match (&jwk.algorithm, &jwk.common.key_id) {
                (AlgorithmParameters::OctetKeyPair(okp), Some(kid))
                    if okp.curve == EllipticCurve::Ed25519 =>
                {
                    Some(Self {
                        kid: kid.clone(),
                        x: okp.x.clone(),
                    })
                }
                _ => None,
            })
            .collect()
    }
}

fn okp_jwk(kid: Option<String>, x: &str) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: kid.as_ref().map(|_| PublicKeyUse::Signature),
            key_algorithm: kid.as_ref().map(|_| KeyAlgorithm::EdDSA),
            key_id: kid,
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: x.to_owned(),
        }),
    }
}

/// The JWKS document served at `/.well-known/jwks.json`.
pub fn jwks(keys: &[PublicKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(PublicKey::to_jwk).collect(),
    }
}

/// The private signing key and its public half.
#[derive(Clone)]
pub struct SigningKey {
    pub public: PublicKey,
    pub encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .context("the JWT private key is not an Ed25519 PKCS#8 PEM")?;
        let public = PublicKey::from_raw(key.verifying_key().as_bytes())?;
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
            .context("the JWT private key is not an Ed25519 PKCS#8 PEM")?;
        Ok(Self { public, encoding })
    }

    /// A fresh key that lives only in memory (for tools that sign nothing that lasts).
    pub fn ephemeral() -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding the generated key")?;
        Self::from_pem(&pem)
    }

    /// Loads the configured key, or the one generated into the data dir (generating it on
    /// first use).
    pub fn load(settings: &KeySettings) -> anyhow::Result<Self> {
        if let Some(pem) = &settings.private_key_pem {
            return Self::from_pem(pem).context("reading GANTRY_JWT_PRIVATE_KEY");
        }
        if let Some(file) = &settings.private_key_file {
            let pem = std::fs::read_to_string(file)
                .with_context(|| format!("reading the JWT private key file {}", file.display()))?;
            return Self::from_pem(&pem)
                .with_context(|| format!("reading the JWT private key file {}", file.display()));
        }
        let path = settings.data_dir.join(GENERATED_KEY_FILE);
        let pem = read_or_generate(&path)?;
        Self::from_pem(&pem).with_context(|| format!("reading {}", path.display()))
    }

    /// Loads the configured key, or the one the users subgraph generated into a shared
    /// data dir, waiting up to `wait` for it to appear (the two may start together); never
    /// generates one. For processes that only verify the users subgraph's tokens: a key of
    /// their own would verify none of them.
    pub async fn load_generated_elsewhere(
        settings: &KeySettings,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        if settings.private_key_pem.is_some() || settings.private_key_file.is_some() {
            return Self::load(settings);
        }
        let path = settings.data_dir.join(GENERATED_KEY_FILE);
        let started = Instant::now();
        let mut reported: Option<Instant> = None;
        loop {
            match std::fs::read_to_string(&path) {
                Ok(pem) => {
                    return Self::from_pem(&pem)
                        .with_context(|| format!("reading {}", path.display()));
                }
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("reading {}", path.display()));
                }
                Err(_) if started.elapsed() >= wait => {
                    anyhow::bail!(
                        "no JWT signing key: none is configured and {} did not appear within \
                         {} s; set GANTRY_JWT_PRIVATE_KEY_FILE to the users subgraph's key, or \
                         give this process the users subgraph's GANTRY_DATA_DIR",
                        path.display(),
                        wait.as_secs()
                    );
                }
                Err(_) => {}
            }
            if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                tracing::info!(
                    path = %path.display(),
                    waited_secs = started.elapsed().as_secs(),
                    "waiting for the users subgraph to generate the signing key"
                );
                reported = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Reads the key file, or generates it. Two processes starting together end up with the
/// same key: the new key is written to a temporary file and linked into place, which
/// fails when another process got there first, and then that process's key is read.
fn read_or_generate(path: &Path) -> anyhow::Result<String> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return Ok(pem);
    }
    let dir = path.parent().context("the key path has no folder")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the generated key")?;
    let tmp = dir.join(format!(".{GENERATED_KEY_FILE}.{}", uuid::Uuid::now_v7()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("writing the generated key to {}", tmp.display()))?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                "no JWT signing key configured: generated one into the data dir; set \
                 GANTRY_JWT_PRIVATE_KEY_FILE in production and share it with every process"
            );
            Ok(pem.to_string())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWT key {}", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("storing the JWT key at {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = KeySettings {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let first = SigningKey::load(&settings).expect("generated");
        let second = SigningKey::load(&settings).expect("reloaded");
        assert_eq!(first.public, second.public);
        assert!(dir.path().join(GENERATED_KEY_FILE).exists());
    }

    #[tokio::test]
    async fn a_verifying_process_never_generates_a_key_and_finds_one_generated_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = KeySettings {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let err = SigningKey::load_generated_elsewhere(&settings, Duration::ZERO)
            .await
            .expect_err("no key yet");
        assert!(format!("{err:#}").contains("GANTRY_JWT_PRIVATE_KEY_FILE"));
        assert!(!dir.path().join(GENERATED_KEY_FILE).exists());

        let waiting = tokio::spawn({
            let settings = settings.clone();
            async move { SigningKey::load_generated_elsewhere(&settings, Duration::from_secs(30)).await }
        });
        let generated = SigningKey::load(&settings).expect("generated");
        let found = waiting.await.expect("joined").expect("found");
        assert_eq!(found.public, generated.public);
    }

    #[test]
    fn a_configured_key_that_is_not_a_pem_is_a_clear_error() {
        let settings = KeySettings {
            private_key_pem: Some("nonsense".into()),
            ..Default::default()
        };
        let err = SigningKey::load(&settings).expect_err("rejected");
        assert!(format!("{err:#}").contains("GANTRY_JWT_PRIVATE_KEY"));
    }

    #[test]
    fn the_jwks_round_trips_to_the_same_public_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = KeySettings {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let key = SigningKey::load(&settings).expect("generated");
        let set = jwks(std::slice::from_ref(&key.public));
        assert_eq!(PublicKey::from_jwks(&set), vec![key.public]);
    }
}
