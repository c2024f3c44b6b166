//! Security audit entries for actions that are not aggregate events: logins, failed
//! logins, logouts. The table is append-only; entries name people only by id.

use deadpool_postgres::Pool;
use medflow_domain::values::{AccountId, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_id: Option<AccountId>,
    pub actor_role: Option<Role>,
    /// Action, as a stable dotted name such as `session.login`.
    pub action: &'static str,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    /// HMAC of the client address (see `crypto::index`), never the address itself.
    pub client_address_index: Option<String>,
}

#[derive(Clone)]
pub struct AuditLog {
    pool: Pool,
}

impl AuditLog {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn record(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO audit_entries
                   (actor_id, actor_role, action, target_type, target_id, outcome, request_id, client_address_index)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &entry.actor_id.map(|id| id.0),
                    &entry.actor_role.map(Role::as_str),
                    &entry.action,
                    &entry.target_type,
                    &entry.target_id,
                    &entry.outcome.as_str(),
                    &entry.request_id,
                    &entry.client_address_index,
                ],
            )
            .await?;
        Ok(())
    }
}
