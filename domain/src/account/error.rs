use crate::values::AccountId;

/// Commands an account's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this e-mail address already exists")]
    AlreadyRegistered,
    #[error("account not found")]
    NotFound,
    #[error("account {0} is already suspended")]
    AlreadySuspended(AccountId),
    #[error("account {0} is not suspended")]
    NotSuspended(AccountId),
    #[error("an admin cannot suspend their own account")]
    CannotSuspendSelf,
}
