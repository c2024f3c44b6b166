//! Keyed hashes (HMAC-SHA-256) used as lookup keys for personal values that must be
//! found again but never stored in clear: e-mail addresses and client addresses.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use medflow_domain::values::{EmailAddress, EmailIndex};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

#[derive(Clone)]
pub struct BlindIndex {
    mac: Hmac<Sha256>,
}

impl BlindIndex {
    /// Builds the index from base64 of a 32-byte key (`MEDFLOW_INDEX_KEY`).
    pub fn from_base64(secret: &SecretString) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(secret.expose_secret().trim())
            .map_err(|_| "MEDFLOW_INDEX_KEY is not valid base64".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "MEDFLOW_INDEX_KEY must decode to 32 bytes, got {}",
                bytes.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC accepts any key length");
        Ok(Self { mac })
    }

    fn digest(&self, domain: &str, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        // The domain prefix keeps an e-mail hash from ever equalling an address hash.
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn email(&self, email: &EmailAddress) -> EmailIndex {
        EmailIndex(self.digest("email", email.as_str().as_bytes()))
    }

    pub fn client_address(&self, address: IpAddr) -> String {
        self.digest("client-address", address.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(byte: u8) -> BlindIndex {
        BlindIndex::from_base64(&SecretString::from(STANDARD.encode([byte; 32]))).unwrap()
    }

    #[test]
    fn email_index_ignores_case_of_input() {
        let lower = EmailAddress::parse("email", "bob@example.org").unwrap();
        let upper = EmailAddress::parse("email", "BOB@Example.org").unwrap();
        assert_eq!(index(1).email(&lower), index(1).email(&upper));
    }

    #[test]
    fn email_index_depends_on_key() {
        let email = EmailAddress::parse("email", "bob@example.org").unwrap();
        assert_ne!(index(1).email(&email), index(2).email(&email));
        assert!(!index(1).email(&email).0.contains("bob"));
    }

    #[test]
    fn short_key_is_rejected() {
        let error = BlindIndex::from_base64(&SecretString::from(STANDARD.encode([1u8; 16]))).err();
        assert_eq!(
            error.as_deref(),
            Some("MEDFLOW_INDEX_KEY must decode to 32 bytes, got 16")
        );
    }
}
