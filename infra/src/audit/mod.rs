//! The audit trail beside the event table: security and access entries, the hash
//! chain and signed checkpoints that make tampering detectable, and the replay that
//! compliance staff read. docs/audit.md describes the design.
//!
//! Entries name people only by id; a client's network address is sealed under the
//! actor's data key.

pub mod chain;
pub mod checkpoint;
pub mod fhir;
pub mod records;
pub mod replay;
pub mod retention;
pub mod signing;
pub mod verify;

use std::borrow::Cow;

use deadpool_postgres::Pool;
use medflow_domain::values::{AccountId, Role, SealedValue};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The request was refused for lack of permission (or the record is not the
    /// caller's); recorded so that reviewers see attempts, not only accesses.
    Denied,
    /// The request failed for another reason: bad input, a missing record, an error.
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_id: Option<AccountId>,
    pub actor_role: Option<Role>,
    /// Action, as a stable dotted name such as `session.login`, or for reads the
    /// method and route, such as `GET /appointments/{appointment_id}`.
    pub action: Cow<'static, str>,
    pub target_type: Option<Cow<'static, str>>,
    pub target_id: Option<String>,
    /// The patient whose data the action touched, when there is one.
    pub patient_id: Option<Uuid>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    /// HMAC of the client address (see `crypto::index`), never the address itself.
    pub client_address_index: Option<String>,
    /// The client address sealed under the actor's data key.
    pub client_address: Option<SealedValue>,
}

impl AuditEntry {
    /// An entry with only the action and outcome set; fill in what is known.
    pub fn new(action: impl Into<Cow<'static, str>>, outcome: Outcome) -> Self {
        Self {
            actor_id: None,
            actor_role: None,
            action: action.into(),
            target_type: None,
            target_id: None,
            patient_id: None,
            outcome,
            request_id: None,
            client_address_index: None,
            client_address: None,
        }
    }
}

#[derive(Clone)]
pub struct AuditLog {
    pool: Pool,
}

impl AuditLog {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Appends `entry`. The database computes the entry's hash on insert.
    pub async fn record(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        self.record_all(std::slice::from_ref(entry)).await
    }

    /// Appends `entries` in one transaction: all of them or none.
    pub async fn record_all(&self, entries: &[AuditEntry]) -> anyhow::Result<()> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO audit_entries
                   (actor_id, actor_role, action, target_type, target_id, patient_id, outcome,
                    request_id, client_address_index, client_address)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await?;
        for entry in entries {
            let client_address = entry
                .client_address
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?;
            transaction
                .execute(
                    &insert,
                    &[
                        &entry.actor_id.map(|id| id.0),
                        &entry.actor_role.map(Role::as_str),
                        &entry.action.as_ref(),
                        &entry.target_type.as_deref(),
                        &entry.target_id,
                        &entry.patient_id,
                        &entry.outcome.as_str(),
                        &entry.request_id,
                        &entry.client_address_index,
                        &client_address,
                    ],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}
