//! The Account aggregate: registration as patient, doctor or admin, suspension and
//! reinstatement. Personal data arrives already sealed, so events carry only ciphertext.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{Account, AccountStatus};
pub use commands::{AccountCommand, RegisterAccount};
pub use error::AccountError;
pub use events::AccountEvent;

use uuid::Uuid;

use crate::values::{AccountId, EmailIndex};

impl AccountId {
    /// Derives the account id from the keyed e-mail index. Registration is a command on
    /// this id, so two registrations of one address race for the same aggregate version
    /// and the event store's optimistic lock lets exactly one of them win.
    pub fn for_email(index: &EmailIndex) -> AccountId {
        let mut bytes = [0u8; 16];
        for (slot, pair) in bytes.iter_mut().zip(index.0.as_bytes().chunks(2)) {
            let text = std::str::from_utf8(pair).unwrap_or("00");
            *slot = u8::from_str_radix(text, 16).unwrap_or(0);
        }
        AccountId(Uuid::new_v8(bytes))
    }
}
