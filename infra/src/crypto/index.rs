//! Keyed hashes (HMAC-SHA-256) used as lookup keys for personal values that must be
//! found again but never stored in clear: e-mail addresses, client addresses, the words
//! of a doctor's display name and license numbers.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use medflow_domain::values::{EmailAddress, EmailIndex};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

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

    /// Hashes each word of `name` (see [`name_words`]) for search by name. The tokens
    /// are sorted and deduplicated, so they reveal neither word order nor repeats.
    /// Hashing a search query the same way finds the names that contain its words: a
    /// search for "okafor" or "Okafór" matches "Dr. Amara Okafor".
    pub fn name_tokens(&self, name: &str) -> Vec<String> {
        let mut tokens: Vec<String> = name_words(name)
            .iter()
            .map(|word| self.digest("name-token", word.as_bytes()))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }

    /// Hashes a license number after [`normalize_license_number`], so a changed number
    /// can be detected without opening the sealed value.
    pub fn license_fingerprint(&self, license_number: &str) -> String {
        self.digest(
            "license-number",
            normalize_license_number(license_number).as_bytes(),
        )
    }
}

/// Splits `text` into lower-case words without accents, for search by name.
///
/// The text is lower-cased, decomposed (Unicode NFKD, so compatibility forms such as
/// full-width letters become plain ones), stripped of combining marks and recomposed
/// (NFC). Words are runs of letters and digits. Apostrophes inside a word are dropped,
/// so "O'Brien" is the word "obrien"; every other character separates words.
///
/// Removing combining marks makes search accent-insensitive ("José" matches "jose").
/// In scripts whose vowel signs are combining marks, such as Devanagari, it also merges
/// some distinct words. That can add search matches, but loses none as long as search
/// queries are hashed with [`BlindIndex::name_tokens`] too.
pub fn name_words(text: &str) -> Vec<String> {
    let folded: String = text
        .to_lowercase()
        .nfkd()
        .filter(|character| !is_combining_mark(*character))
        .nfc()
        .collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for character in folded.chars() {
        if character.is_alphanumeric() {
            current.push(character);
        } else if !is_apostrophe(character) && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn is_apostrophe(character: char) -> bool {
    matches!(character, '\'' | '\u{2019}')
}

/// Normalizes a license number for comparison: upper-case, without whitespace.
/// Separators such as '-', '/' and '.' are kept, so "12-345" and "123-45" stay
/// different numbers.
pub fn normalize_license_number(license_number: &str) -> String {
    license_number
        .chars()
        .filter(|character| !character.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
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
    fn name_tokens_match_words_in_any_case() {
        let full = index(1).name_tokens("Dr. Amara  Okafor-Ndiaye");
        let search = index(1).name_tokens("okafor");
        assert_eq!(full.len(), 4);
        assert!(full.contains(&search[0]));
    }

    #[test]
    fn license_fingerprint_ignores_case_and_spaces() {
        assert_eq!(
            index(1).license_fingerprint("gmc 123 456"),
            index(1).license_fingerprint("GMC123456")
        );
        assert_ne!(
            index(1).license_fingerprint("GMC123456"),
            index(1).license_fingerprint("GMC123457")
        );
    }

    #[test]
    fn name_words_are_lower_case_without_accents() {
        assert_eq!(
            name_words("Dr. José  ÖZTÜRK-Smith"),
            ["dr", "jose", "ozturk", "smith"]
        );
    }

    #[test]
    fn name_words_ignore_unicode_form() {
        let composed = "Ren\u{e9}e M\u{fc}ller";
        let decomposed = "Rene\u{301}e Mu\u{308}ller";
        let full_width = "\u{ff32}\u{ff45}\u{ff4e}\u{e9}\u{ff45} M\u{fc}ller";
        assert_eq!(name_words(composed), ["renee", "muller"]);
        assert_eq!(name_words(decomposed), ["renee", "muller"]);
        assert_eq!(name_words(full_width), ["renee", "muller"]);
    }

    #[test]
    fn name_words_keep_apostrophes_inside_words() {
        assert_eq!(name_words("Siobhán O'Brien"), ["siobhan", "obrien"]);
        assert_eq!(name_words("D\u{2019}Angelo"), ["dangelo"]);
    }

    #[test]
    fn name_words_of_punctuation_are_empty() {
        assert!(name_words(" .-!? ").is_empty());
    }

    #[test]
    fn name_tokens_are_sorted_and_unique() {
        let index = index(1);
        let tokens = index.name_tokens("Anna Anna Bell");
        assert_eq!(tokens.len(), 2);
        assert!(tokens[0] < tokens[1]);
        assert_eq!(tokens, index.name_tokens("bell anna"));
    }

    #[test]
    fn name_tokens_depend_on_key_and_hide_words() {
        let first = index(1).name_tokens("Okafor");
        assert_ne!(first, index(2).name_tokens("Okafor"));
        assert!(!first[0].contains("okafor"));
        assert_eq!(first[0].len(), 64);
    }

    #[test]
    fn license_fingerprint_keeps_separators() {
        let index = index(1);
        assert_ne!(
            index.license_fingerprint("12-345"),
            index.license_fingerprint("123-45")
        );
    }

    #[test]
    fn hash_domains_are_separate() {
        let index = index(1);
        assert_ne!(
            index.name_tokens("abc")[0],
            index.license_fingerprint("abc")
        );
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
