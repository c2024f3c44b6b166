use crate::values::{AccountId, EmailIndex, Role, SealedValue};

/// Registration data. The command API seals e-mail, name and password hash under the
/// new account's data key before building this command.
#[derive(Debug, Clone)]
pub struct RegisterAccount {
    pub account_id: AccountId,
    pub role: Role,
    pub email_index: EmailIndex,
    pub email: SealedValue,
    pub name: SealedValue,
    pub password_hash: SealedValue,
    /// The admin who created this account; `None` for self-registration and for the
    /// first admin created from the operator CLI.
    pub registered_by: Option<AccountId>,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Register(RegisterAccount),
    Suspend { reason: SealedValue, by: AccountId },
    Reinstate { by: AccountId },
}
