//! Ed25519 keys for checkpoints. The sealer holds the private key (from the
//! environment, never from the database); verify needs only public keys, so compliance
//! staff can check a database they do not trust with a key they were given separately.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Short id of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

pub struct CheckpointSigner {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Reads a base64-encoded 32-byte Ed25519 seed.
    pub fn from_base64_seed(secret: &SecretString) -> Result<Self, String> {
        let seed = STANDARD
            .decode(secret.expose_secret().trim())
            .map_err(|_| "the checkpoint signing key is not valid base64".to_owned())?;
        if seed.len() != 32 {
            return Err(format!(
                "the checkpoint signing key must be 32 bytes, not {}",
                seed.len()
            ));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| "the checkpoint signing key is not a valid Ed25519 seed".to_owned())?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    /// A fresh random seed, base64-encoded, for `medflow stack` and tests.
    pub fn generate_seed() -> String {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        STANDARD.encode(seed)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Public keys trusted to have signed checkpoints, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, Vec<u8>>,
}

impl TrustedKeys {
    /// Parses a comma-separated list of base64-encoded 32-byte Ed25519 public keys.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (index, item) in list.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let key = STANDARD
                .decode(item)
                .map_err(|_| format!("public key {} is not valid base64", index + 1))?;
            if key.len() != 32 {
                return Err(format!(
                    "public key {} must be 32 bytes, not {}",
                    index + 1,
                    key.len()
                ));
            }
            keys.insert(key_id(&key), key);
        }
        Ok(Self { keys })
    }

    pub fn with_signer(mut self, signer: &CheckpointSigner) -> Self {
        let public = signer.pair.public_key().as_ref().to_vec();
        self.keys.insert(signer.key_id.clone(), public);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signature` over `message` with the key `key_id`; false for an unknown key.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> bool {
        self.keys.get(key_id).is_some_and(|key| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(message, signature)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_key_and_message() {
        let signer =
            CheckpointSigner::from_base64_seed(&CheckpointSigner::generate_seed().into()).unwrap();
        let other =
            CheckpointSigner::from_base64_seed(&CheckpointSigner::generate_seed().into()).unwrap();
        let trusted = TrustedKeys::parse(&signer.public_key_base64()).unwrap();
        let signature = signer.sign(b"range 1..10");
        assert!(trusted.verify(signer.key_id(), b"range 1..10", &signature));
        assert!(!trusted.verify(signer.key_id(), b"range 1..11", &signature));
        assert!(!trusted.verify(other.key_id(), b"range 1..10", &other.sign(b"range 1..10")));
    }

    #[test]
    fn bad_keys_are_refused_with_their_position() {
        assert!(
            CheckpointSigner::from_base64_seed(&"AAAA".to_owned().into())
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(TrustedKeys::parse("AAAA, ###")
            .unwrap_err()
            .contains("public key 1"));
    }
}
