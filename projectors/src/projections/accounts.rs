//! `accounts`: the account directory behind `GET /me` and the admin account list.

use async_trait::async_trait;
use medflow_domain::account::{Account, AccountEvent};
use medflow_infra::events::StoredEvent;

use uuid::Uuid;

use crate::framework::ReadModelTransaction;
use crate::Projection;

pub struct AccountsProjection;

#[async_trait]
impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[<Account as cqrs_es::Aggregate>::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["account_directory"]
    }

    async fn apply(
        &self,
        transaction: &ReadModelTransaction<'_>,
        event: &StoredEvent,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            medflow_domain::upcasting::is_current(&event.event_type, &event.event_version),
            "unsupported {} version {}",
            event.event_type,
            event.event_version
        );
        let account_id = Uuid::parse_str(&event.aggregate_id)?;
        let payload: AccountEvent = serde_json::from_value(event.payload.clone())?;
        match payload {
            AccountEvent::AccountRegistered {
                role,
                email_index,
                email,
                name,
                registered_by,
                ..
            } => {
                transaction
                    .execute(
                        "INSERT INTO account_directory
                           (account_id, role, status, email_index, email, name, registered_by, registered_at, updated_at)
                         VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $7)",
                        &[
                            &account_id,
                            &role.as_str(),
                            &email_index.0,
                            &serde_json::to_value(&email)?,
                            &serde_json::to_value(&name)?,
                            &registered_by.map(|id| id.0),
                            &event.recorded_at,
                        ],
                    )
                    .await?;
            }
            AccountEvent::AccountSuspended { reason, .. } => {
                let reason = serde_json::to_value(&reason)?;
                set_status(transaction, account_id, "suspended", Some(reason), event).await?;
            }
            AccountEvent::AccountReinstated { .. } => {
                set_status(transaction, account_id, "active", None, event).await?;
            }
        }
        Ok(())
    }
}

async fn set_status(
    transaction: &ReadModelTransaction<'_>,
    account_id: Uuid,
    status: &str,
    suspension_reason: Option<serde_json::Value>,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    let changed = transaction
        .execute(
            "UPDATE account_directory SET status = $2, suspension_reason = $3, updated_at = $4
             WHERE account_id = $1",
            &[&account_id, &status, &suspension_reason, &event.recorded_at],
        )
        .await?;
    anyhow::ensure!(changed == 1, "account {account_id} is not in the directory");
    Ok(())
}
