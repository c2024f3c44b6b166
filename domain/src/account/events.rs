use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::values::{AccountId, EmailIndex, Role, SealedValue};

/// Facts about an account. Personal data appears only as [`SealedValue`] ciphertext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered {
        account_id: AccountId,
        role: Role,
        email_index: EmailIndex,
        email: SealedValue,
        name: SealedValue,
        password_hash: SealedValue,
        registered_by: Option<AccountId>,
    },
    AccountSuspended {
        reason: SealedValue,
        suspended_by: AccountId,
    },
    AccountReinstated {
        reinstated_by: AccountId,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            AccountEvent::AccountRegistered { .. } => "AccountRegistered",
            AccountEvent::AccountSuspended { .. } => "AccountSuspended",
            AccountEvent::AccountReinstated { .. } => "AccountReinstated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
