//! Field-level validation errors shared by every parser in the domain.

use serde::Serialize;

/// A rejected input value: which field, and why, in words a client can act on.
///
/// `detail` never repeats a secret or a personal value verbatim; for such fields it
/// describes the value instead (its length, the rule it breaks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
