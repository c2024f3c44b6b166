//! Value types of a doctor profile.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::availability::DoctorTimeZone;
use crate::values::{truncate, SealedValue};
use crate::FieldError;

/// Specialties a doctor can be listed under. A fixed list keeps directory search exact.
pub const SPECIALTIES: &[&str] = &[
    "allergy-immunology",
    "cardiology",
    "dermatology",
    "endocrinology",
    "family-medicine",
    "gastroenterology",
    "general-practice",
    "geriatrics",
    "gynecology",
    "infectious-disease",
    "internal-medicine",
    "nephrology",
    "neurology",
    "oncology",
    "ophthalmology",
    "orthopedics",
    "otolaryngology",
    "pediatrics",
    "psychiatry",
    "psychology",
    "pulmonology",
    "rheumatology",
    "urology",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Specialty(String);

impl Specialty {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let normalized = raw.trim().to_ascii_lowercase();
        if SPECIALTIES.contains(&normalized.as_str()) {
            Ok(Self(normalized))
        } else {
            Err(FieldError::new(
                field,
                format!(
                    "'{}' is not a known specialty; expected one of {}",
                    truncate(raw, 40),
                    SPECIALTIES.join(", ")
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maximum number of consultation languages per profile.
pub const MAX_LANGUAGES: usize = 10;

/// The ISO 639-1 language codes (the 183 current two-letter codes of the ISO 639
/// registration authority).
pub const ISO_639_1: &[&str] = &[
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk",
    "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa",
    "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// A consultation language as an ISO 639-1 code, such as `en` or `de`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let normalized = raw.trim().to_ascii_lowercase();
        if ISO_639_1.contains(&normalized.as_str()) {
            Ok(Self(normalized))
        } else {
            Err(FieldError::new(
                field,
                format!(
                    "'{}' is not a two-letter ISO 639-1 language code such as en or de",
                    truncate(raw, 40)
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Details a doctor states about themselves. Personal or free-text values arrive sealed
/// under the doctor's data key, and keyed hashes make them searchable and comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileDetails {
    /// Public name in the directory, such as "Dr. Amara Okafor".
    pub display_name: SealedValue,
    /// Keyed hashes of the display name's lower-case words, for search by name.
    pub name_tokens: Vec<String>,
    pub specialty: Specialty,
    pub license_number: SealedValue,
    /// Keyed hash of the normalized license number, so a change can be detected
    /// without opening the sealed value.
    pub license_fingerprint: String,
    /// Authority that issued the license, such as "General Medical Council".
    pub issuing_authority: String,
    pub biography: SealedValue,
    pub time_zone: DoctorTimeZone,
    pub languages: Vec<Language>,
}

impl ProfileDetails {
    /// Returns whether `other` changes what an admin verified: the license number or authority.
    pub fn license_differs(&self, other: &ProfileDetails) -> bool {
        self.license_fingerprint != other.license_fingerprint
            || self.issuing_authority != other.issuing_authority
    }
}

/// Maximum number of license documents per profile.
pub const MAX_LICENSE_DOCUMENTS: usize = 10;

/// A license document stored in the object store, attached after the server checked
/// its size and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseDocument {
    pub document_id: Uuid,
    pub object_key: String,
    pub content_type: String,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialty_is_normalized() {
        assert_eq!(
            Specialty::parse("specialty", " Cardiology ")
                .unwrap()
                .as_str(),
            "cardiology"
        );
    }

    #[test]
    fn unknown_specialty_is_rejected() {
        let error = Specialty::parse("specialty", "astrology").unwrap_err();
        assert_eq!(error.field, "specialty");
        assert!(error.detail.contains("'astrology'"), "{}", error.detail);
    }

    #[test]
    fn language_must_be_two_letters() {
        assert_eq!(
            Language::parse("languages[0]", "EN").unwrap().as_str(),
            "en"
        );
        for raw in ["eng", "e", "e1", "", "zz", "qq"] {
            assert!(
                Language::parse("languages[0]", raw).is_err(),
                "{raw:?} was accepted"
            );
        }
    }
}
