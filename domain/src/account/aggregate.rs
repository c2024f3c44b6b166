use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{AccountCommand, AccountError, AccountEvent, RegisterAccount};
use crate::values::{AccountId, EmailIndex, Role, SealedValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// No registration event yet: the aggregate id is free.
    #[default]
    Unregistered,
    Active,
    Suspended,
}

/// Write-side state of one account, rebuilt from its events on every command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    pub id: Option<AccountId>,
    pub status: AccountStatus,
    pub role: Option<Role>,
    pub email_index: Option<EmailIndex>,
    pub email: Option<SealedValue>,
    pub name: Option<SealedValue>,
    pub password_hash: Option<SealedValue>,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AccountCommand::Register(registration) => {
                if self.status != AccountStatus::Unregistered {
                    return Err(AccountError::AlreadyRegistered);
                }
                let RegisterAccount {
                    account_id,
                    role,
                    email_index,
                    email,
                    name,
                    password_hash,
                    registered_by,
                } = registration;
                let event = AccountEvent::AccountRegistered {
                    account_id,
                    role,
                    email_index,
                    email,
                    name,
                    password_hash,
                    registered_by,
                };
                sink.write(event, self).await;
            }
            AccountCommand::Suspend { reason, by } => {
                let target = self.id.ok_or(AccountError::NotFound)?;
                match self.status {
                    AccountStatus::Unregistered => return Err(AccountError::NotFound),
                    AccountStatus::Suspended => return Err(AccountError::AlreadySuspended(target)),
                    AccountStatus::Active => {}
                }
                if by == target {
                    return Err(AccountError::CannotSuspendSelf);
                }
                sink.write(
                    AccountEvent::AccountSuspended {
                        reason,
                        suspended_by: by,
                    },
                    self,
                )
                .await;
            }
            AccountCommand::Reinstate { by } => {
                let target = self.id.ok_or(AccountError::NotFound)?;
                match self.status {
                    AccountStatus::Unregistered => return Err(AccountError::NotFound),
                    AccountStatus::Active => return Err(AccountError::NotSuspended(target)),
                    AccountStatus::Suspended => {}
                }
                sink.write(AccountEvent::AccountReinstated { reinstated_by: by }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountRegistered {
                account_id,
                role,
                email_index,
                email,
                name,
                password_hash,
                ..
            } => {
                self.id = Some(account_id);
                self.status = AccountStatus::Active;
                self.role = Some(role);
                self.email_index = Some(email_index);
                self.email = Some(email);
                self.name = Some(name);
                self.password_hash = Some(password_hash);
            }
            AccountEvent::AccountSuspended { .. } => self.status = AccountStatus::Suspended,
            AccountEvent::AccountReinstated { .. } => self.status = AccountStatus::Active,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn sealed(tag: &str) -> SealedValue {
        SealedValue {
            key_id: Uuid::nil(),
            nonce: tag.to_owned(),
            ciphertext: tag.to_owned(),
        }
    }

    fn registration() -> RegisterAccount {
        RegisterAccount {
            account_id: TARGET,
            role: Role::Patient,
            email_index: EmailIndex("ab".repeat(32)),
            email: sealed("email"),
            name: sealed("name"),
            password_hash: sealed("hash"),
            registered_by: None,
        }
    }

    fn registered_event() -> AccountEvent {
        let RegisterAccount {
            account_id,
            role,
            email_index,
            email,
            name,
            password_hash,
            registered_by,
        } = registration();
        AccountEvent::AccountRegistered {
            account_id,
            role,
            email_index,
            email,
            name,
            password_hash,
            registered_by,
        }
    }

    const TARGET: AccountId = AccountId(Uuid::from_u128(1));
    const ADMIN: AccountId = AccountId(Uuid::from_u128(2));

    type AccountTest = TestFramework<Account>;

    #[test]
    fn register_new_account() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(AccountCommand::Register(registration()))
            .then_expect_events(vec![registered_event()]);
    }

    #[test]
    fn register_twice_is_rejected() {
        AccountTest::with(())
            .given(vec![registered_event()])
            .when(AccountCommand::Register(registration()))
            .then_expect_error(AccountError::AlreadyRegistered);
    }

    #[test]
    fn suspend_active_account() {
        AccountTest::with(())
            .given(vec![registered_event()])
            .when(AccountCommand::Suspend {
                reason: sealed("reason"),
                by: ADMIN,
            })
            .then_expect_events(vec![AccountEvent::AccountSuspended {
                reason: sealed("reason"),
                suspended_by: ADMIN,
            }]);
    }

    #[test]
    fn suspend_self_is_rejected() {
        AccountTest::with(())
            .given(vec![registered_event()])
            .when(AccountCommand::Suspend {
                reason: sealed("reason"),
                by: TARGET,
            })
            .then_expect_error(AccountError::CannotSuspendSelf);
    }

    #[test]
    fn suspend_unknown_account_is_rejected() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(AccountCommand::Suspend {
                reason: sealed("reason"),
                by: ADMIN,
            })
            .then_expect_error(AccountError::NotFound);
    }

    #[test]
    fn reinstate_requires_suspension() {
        AccountTest::with(())
            .given(vec![registered_event()])
            .when(AccountCommand::Reinstate { by: ADMIN })
            .then_expect_error(AccountError::NotSuspended(TARGET));
    }

    #[test]
    fn reinstate_suspended_account() {
        AccountTest::with(())
            .given(vec![
                registered_event(),
                AccountEvent::AccountSuspended {
                    reason: sealed("reason"),
                    suspended_by: ADMIN,
                },
            ])
            .when(AccountCommand::Reinstate { by: ADMIN })
            .then_expect_events(vec![AccountEvent::AccountReinstated {
                reinstated_by: ADMIN,
            }]);
    }

    #[test]
    fn account_id_follows_email_index() {
        let first = AccountId::for_email(&EmailIndex("0f".repeat(32)));
        let again = AccountId::for_email(&EmailIndex("0f".repeat(32)));
        let other = AccountId::for_email(&EmailIndex("10".repeat(32)));
        assert_eq!(first, again);
        assert_ne!(first, other);
    }
}
