//! Password hashing with scrypt (N=2^17 by default, r=8, p=1, 32-byte salt) in PHC
//! string format. The PHC string records the parameters, so hashes made with another
//! N still verify.
//!
//! Hashing runs on the blocking thread pool so it never stalls the async executor, and
//! a semaphore caps concurrent hashes because each one allocates 128·r·N bytes (128 MiB
//! at the default N).

use std::sync::Arc;

use medflow_domain::values::Password;
use rand::rngs::OsRng;
use rand::RngCore;
use scrypt::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use scrypt::{Params, Scrypt};
use tokio::sync::Semaphore;

use super::CryptoError;

/// Default cost: log2 of scrypt's N.
pub const LOG_N: u8 = 17;
/// Lowest cost a deployment may choose, for demo and test data only.
pub const MIN_LOG_N: u8 = 10;
/// Highest cost: N=2^20 needs 1 GiB per hash.
pub const MAX_LOG_N: u8 = 20;
pub const R: u32 = 8;
pub const P: u32 = 1;
pub const SALT_LEN: usize = 32;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    log_n: u8,
    /// Hash of a random password, verified when a login names an unknown account so
    /// that the response takes as long as a wrong password does.
    decoy_hash: Arc<String>,
}

impl PasswordHasher {
    /// Creates a hasher that runs at most `max_concurrent` hashes at once, each with
    /// N=2^`log_n` (between `MIN_LOG_N` and `MAX_LOG_N`).
    pub async fn new(max_concurrent: usize, log_n: u8) -> Result<Self, CryptoError> {
        if !(MIN_LOG_N..=MAX_LOG_N).contains(&log_n) {
            return Err(CryptoError::Hashing);
        }
        let mut decoy = [0u8; 32];
        OsRng.fill_bytes(&mut decoy);
        let decoy_hash =
            tokio::task::spawn_blocking(move || hash_blocking(&hex::encode(decoy), log_n))
                .await
                .map_err(|_| CryptoError::Hashing)??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            log_n,
            decoy_hash: Arc::new(decoy_hash),
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, CryptoError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CryptoError::Hashing)?;
        let password = password.expose().to_owned();
        let log_n = self.log_n;
        tokio::task::spawn_blocking(move || hash_blocking(&password, log_n))
            .await
            .map_err(|_| CryptoError::Hashing)?
    }

    /// Checks `password` against `stored`, or against the decoy hash when there is no
    /// stored hash, so both cases cost one full scrypt evaluation. The comparison of
    /// the derived key is constant-time (password-hash's `Output` equality).
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<String>,
    ) -> Result<bool, CryptoError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CryptoError::Hashing)?;
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.decoy_hash.as_str().to_owned());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|parsed| Scrypt.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|_| CryptoError::Hashing)?;
        Ok(known && matches)
    }
}

fn hash_blocking(password: &str, log_n: u8) -> Result<String, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| CryptoError::Hashing)?;
    let params =
        Params::new(log_n, R, P, Params::RECOMMENDED_LEN).map_err(|_| CryptoError::Hashing)?;
    Scrypt
        .hash_password_customized(password.as_bytes(), None, None, params, &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| CryptoError::Hashing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_phc_with_required_parameters() {
        let hasher = PasswordHasher::new(1, LOG_N).await.unwrap();
        let password = Password::parse("password", "violet lantern harbor mosaic", &[]).unwrap();
        let phc = hasher.hash(&password).await.unwrap();
        assert!(phc.starts_with("$scrypt$ln=17,r=8,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(
            parsed
                .salt
                .unwrap()
                .decode_b64(&mut [0u8; 64])
                .unwrap()
                .len(),
            SALT_LEN
        );
        assert!(hasher
            .verify("violet lantern harbor mosaic", Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("violet lantern harbor mosaik", Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1, LOG_N).await.unwrap();
        assert!(!hasher.verify("anything at all here", None).await.unwrap());
    }

    #[tokio::test]
    async fn lower_cost_hash_verifies_everywhere() {
        let cheap = PasswordHasher::new(1, MIN_LOG_N).await.unwrap();
        let password = Password::parse("password", "amber orchid canyon relay", &[]).unwrap();
        let phc = cheap.hash(&password).await.unwrap();
        assert!(phc.starts_with("$scrypt$ln=10,r=8,p=1$"), "{phc}");
        // A hasher with the default cost reads the cost from the PHC string.
        let default = PasswordHasher::new(1, LOG_N).await.unwrap();
        assert!(default
            .verify("amber orchid canyon relay", Some(phc))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn cost_outside_range_rejected() {
        assert!(PasswordHasher::new(1, MIN_LOG_N - 1).await.is_err());
        assert!(PasswordHasher::new(1, MAX_LOG_N + 1).await.is_err());
    }
}
