//! Cryptography for personal data and credentials.
//!
//! - [`keys`]: master keys from the environment, per-person data keys wrapped by them.
//! - [`envelope`]: AES-256-GCM sealing of one value under a data key.
//! - [`index`]: HMAC-SHA-256 lookup keys for values that must be found but not stored.
//! - [`password`]: scrypt password hashing in PHC format, off the async executor.
//! - [`token`]: random bearer tokens and their stored hashes.

pub mod envelope;
pub mod index;
pub mod keys;
pub mod password;
pub mod token;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("data key {0} was not found")]
    UnknownDataKey(uuid::Uuid),
    #[error("data key {0} has been destroyed")]
    DestroyedDataKey(uuid::Uuid),
    #[error("master key '{0}' is not configured in MEDFLOW_MASTER_KEYS")]
    UnknownMasterKey(String),
    #[error("ciphertext failed authentication (wrong key, field or tampered data)")]
    Authentication,
    #[error("ciphertext is not valid base64")]
    Encoding,
    #[error("key store query failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("key store connection failed")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("password hashing task failed")]
    Hashing,
}
