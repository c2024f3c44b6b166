//! AES-256-GCM sealing of a single value.
//!
//! The associated data binds each ciphertext to its subject and field, so a sealed
//! e-mail address cannot be replayed as someone else's, or as a name.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use medflow_domain::values::SealedValue;
use uuid::Uuid;

use super::CryptoError;

/// An unwrapped data key, ready to seal and open values.
#[derive(Clone)]
pub struct DataKey {
    pub key_id: Uuid,
    cipher: Aes256Gcm,
}

impl DataKey {
    pub fn from_bytes(key_id: Uuid, bytes: &[u8; 32]) -> Self {
        Self {
            key_id,
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    pub fn seal(&self, subject: Uuid, field: &str, plaintext: &[u8]) -> SealedValue {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(subject, field);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for inputs below 64 GiB");
        SealedValue {
            key_id: self.key_id,
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    pub fn open(
        &self,
        subject: Uuid,
        field: &str,
        sealed: &SealedValue,
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = STANDARD
            .decode(&sealed.nonce)
            .map_err(|_| CryptoError::Encoding)?;
        if nonce.len() != 12 {
            return Err(CryptoError::Encoding);
        }
        let ciphertext = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| CryptoError::Encoding)?;
        let aad = associated_data(subject, field);
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)
    }
}

fn associated_data(subject: Uuid, field: &str) -> Vec<u8> {
    format!("medflow/v1/{subject}/{field}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_bytes(Uuid::from_u128(7), &[9u8; 32])
    }

    #[test]
    fn sealed_value_opens_with_same_subject_and_field() {
        let subject = Uuid::from_u128(1);
        let sealed = key().seal(subject, "email", b"alice@example.org");
        assert_eq!(
            key().open(subject, "email", &sealed).unwrap(),
            b"alice@example.org"
        );
        assert!(!sealed.ciphertext.contains("alice"));
    }

    #[test]
    fn sealed_value_is_bound_to_field_and_subject() {
        let subject = Uuid::from_u128(1);
        let sealed = key().seal(subject, "email", b"alice@example.org");
        assert!(matches!(
            key().open(subject, "name", &sealed),
            Err(CryptoError::Authentication)
        ));
        let other = Uuid::from_u128(2);
        assert!(matches!(
            key().open(other, "email", &sealed),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let subject = Uuid::from_u128(1);
        let mut sealed = key().seal(subject, "email", b"alice@example.org");
        let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        sealed.ciphertext = STANDARD.encode(bytes);
        assert!(matches!(
            key().open(subject, "email", &sealed),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let subject = Uuid::from_u128(1);
        let first = key().seal(subject, "email", b"same");
        let second = key().seal(subject, "email", b"same");
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }
}
