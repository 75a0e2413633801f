//! Password hashing with Argon2id at OWASP's parameters (m = 19456 KiB, t = 2, p = 1),
//! stored as PHC strings. Hashing takes tens of milliseconds of CPU, so it runs on the
//! blocking pool, never on the async workers — and at most one hash per core at a time:
//! each holds 19 MiB, and a burst of logins must queue rather than take 19 MiB times the
//! blocking pool's 512 threads (the allocator keeps what a burst took).

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use gantry_kit::ApiError;

use crate::domain::Password;

/// Hashes running now are bounded by the cores available.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cores)
    })
}

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn with_slot<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|err| ApiError::internal("the hashing slots are closed", err))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::internal("the hashing task failed", err))?
}

fn argon2() -> Argon2<'static> {
    // Constant, valid parameters: `Params::new` only fails outside argon2's own bounds.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub async fn hash(password: &Password) -> Result<String, ApiError> {
    let password = password.clone();
    with_slot(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| ApiError::internal("hashing a password", err))
    })
    .await
}

/// Whether `password` matches `phc`. With no stored hash (unknown account) a dummy hash
/// is checked instead, so both failures take the same time.
pub async fn verify(password: &str, phc: Option<String>) -> Result<bool, ApiError> {
    let password = password.to_owned();
    with_slot(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&phc)
            .map_err(|err| ApiError::internal("a stored password hash is unreadable", err))?;
        Ok(argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known)
    })
    .await
}

/// The Argon2id hash of a random string, at the same parameters as real ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5Vb5mGMCH7hcY2LwDJXD9Cm0BBfm2sn9KnMBYEJZ5p4";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let password = Password::parse("correct horse", "password", &[]).expect("valid");
        let phc = hash(&password).await.expect("hashed");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            verify("correct horse", Some(phc.clone()))
                .await
                .expect("checked")
        );
        assert!(!verify("wrong horse", Some(phc)).await.expect("checked"));
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        assert!(!verify("anything at all", None).await.expect("checked"));
    }
}
