//! Validated value types. Each has a `parse` constructor, so an invalid value cannot exist.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::FieldError;

/// Opaque identifier of an account; events refer to people only by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct AccountId(pub Uuid);

impl AccountId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(raw).map(Self).map_err(|_| {
            FieldError::new(
                field,
                format!("'{}' is not a valid UUID", truncate(raw, 40)),
            )
        })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Role of an account, which decides the actions it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Doctor,
    Admin,
    /// Compliance staff: replay and verify the audit trail. Granted by an admin.
    Compliance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Admin => "admin",
            Role::Compliance => "compliance",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        match raw {
            "patient" => Ok(Role::Patient),
            "doctor" => Ok(Role::Doctor),
            "admin" => Ok(Role::Admin),
            "compliance" => Ok(Role::Compliance),
            other => Err(FieldError::new(
                field,
                format!(
                    "'{}' is not a role; expected one of patient, doctor, admin, compliance",
                    truncate(other, 40)
                ),
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maximum length of an e-mail address (RFC 5321 path limit minus the angle brackets).
pub const EMAIL_MAX_LEN: usize = 254;

/// A syntactically valid e-mail address, normalized to lower case and trimmed, so that
/// lookups by address do not depend on how the user typed it.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let normalized = raw.trim().to_lowercase();
        if normalized.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if normalized.chars().count() > EMAIL_MAX_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "value of {} characters is longer than the maximum of {EMAIL_MAX_LEN}",
                    normalized.chars().count()
                ),
            ));
        }
        let valid = email_address::EmailAddress::parse_with_options(
            &normalized,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .is_ok();
        // A bare host ("user@localhost") is legal in RFC 5322 but never a deliverable
        // patient or doctor address, so a dotted domain is required.
        let dotted_domain = normalized
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
        if !valid || !dotted_domain {
            return Err(FieldError::new(field, "is not a valid e-mail address"));
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

/// Maximum length of a display name, in characters.
pub const NAME_MAX_LEN: usize = 100;

/// A person's display name, trimmed, without control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if length == 0 {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if length > NAME_MAX_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "value of {length} characters is longer than the maximum of {NAME_MAX_LEN}"
                ),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

/// Minimum and maximum password length in characters. The maximum bounds the work a
/// single request can cause; 128 is far above any passphrase people type.
pub const PASSWORD_MIN_LEN: usize = 12;
pub const PASSWORD_MAX_LEN: usize = 128;

/// A password that passed the strength policy: 12 to 128 characters and a zxcvbn score
/// of at least 3 ("safely unguessable"), judged against the account's own e-mail and name.
pub struct Password(String);

impl Password {
    pub fn parse(field: &str, raw: &str, personal_inputs: &[&str]) -> Result<Self, FieldError> {
        let length = raw.chars().count();
        if length < PASSWORD_MIN_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "is too short: {length} characters, at least {PASSWORD_MIN_LEN} are required"
                ),
            ));
        }
        if length > PASSWORD_MAX_LEN {
            return Err(FieldError::new(
                field,
                format!("is too long: {length} characters, at most {PASSWORD_MAX_LEN} are allowed"),
            ));
        }
        let estimate = zxcvbn::zxcvbn(raw, personal_inputs);
        if (estimate.score() as u8) < 3 {
            let hint = estimate
                .feedback()
                .and_then(|feedback| {
                    feedback
                        .warning()
                        .map(|warning| warning.to_string().trim_end_matches('.').to_owned())
                })
                .unwrap_or_else(|| "it is too easy to guess".to_owned());
            return Err(FieldError::new(
                field,
                format!("is too weak: {hint}. Use a longer passphrase of unrelated words"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Returns the plain password for hashing. Never log or store the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A value encrypted with AES-256-GCM under a person's data key. `key_id` names the
/// data key, so the master key that wraps data keys can rotate without touching events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValue {
    pub key_id: Uuid,
    /// Base64 (standard alphabet) of the 96-bit nonce.
    pub nonce: String,
    /// Base64 (standard alphabet) of the ciphertext followed by the 128-bit tag.
    pub ciphertext: String,
}

/// Keyed hash (HMAC-SHA-256, hex) of a normalized e-mail address: finds an account by
/// address without storing the address in clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailIndex(pub String);

/// Shortens an echoed input so a problem response never carries a huge value.
pub fn truncate(raw: &str, max_chars: usize) -> String {
    if raw.chars().count() <= max_chars {
        raw.to_owned()
    } else {
        let head: String = raw.chars().take(max_chars).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalized() {
        let email = EmailAddress::parse("email", "  Alice.Smith@Example.ORG ").unwrap();
        assert_eq!(email.as_str(), "alice.smith@example.org");
    }

    #[test]
    fn email_rejects_bad_shapes() {
        for raw in [
            "",
            "alice",
            "alice@",
            "@example.org",
            "a b@example.org",
            "alice@localhost",
            "alice@example.",
        ] {
            let error = EmailAddress::parse("email", raw).unwrap_err();
            assert_eq!(error.field, "email", "input {raw:?}");
        }
    }

    #[test]
    fn email_rejects_over_long_address() {
        let raw = format!("{}@example.org", "a".repeat(250));
        let error = EmailAddress::parse("email", &raw).unwrap_err();
        assert!(
            error.detail.contains("longer than the maximum of 254"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn password_policy_rejects_weak_ones() {
        for raw in [
            "short",
            "password1234",
            "aaaaaaaaaaaaaaaa",
            "alice.smith@example.org",
        ] {
            let result = Password::parse("password", raw, &["alice.smith@example.org"]);
            assert!(result.is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn password_policy_accepts_passphrase() {
        assert!(Password::parse("password", "correct horse battery staple", &[]).is_ok());
    }

    #[test]
    fn password_length_is_bounded() {
        let error = Password::parse("password", &"x".repeat(129), &[]).unwrap_err();
        assert!(error.detail.contains("at most 128"), "{}", error.detail);
    }

    #[test]
    fn name_rejects_control_characters() {
        assert!(PersonName::parse("name", "Alice\u{0007}").is_err());
        assert!(PersonName::parse("name", &"n".repeat(101)).is_err());
        assert_eq!(
            PersonName::parse("name", "  Alice ").unwrap().as_str(),
            "Alice"
        );
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let email = EmailAddress::parse("email", "alice@example.org").unwrap();
        assert!(!format!("{email:?}").contains("alice"));
    }
}
