//! What a replay yields: events (as their current version) and access entries, and
//! their CSV form.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use medflow_domain::rfc3339;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditRecord {
    Event(EventRecord),
    Access(AccessRecord),
}

/// A change: one event of the event store. Personal data in the payload stays sealed.
/// Columns with few distinct values are `Arc<str>`, so that a replay allocates each
/// distinct value once instead of once per event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub position: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub recorded_at: DateTime<Utc>,
    pub aggregate_type: Arc<str>,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: Arc<str>,
    pub event_version: Arc<str>,
    pub actor_id: Option<String>,
    pub actor_role: Option<Arc<str>>,
    pub request_id: Option<String>,
    /// The person the aggregate is about, when there is one.
    pub patient_id: Option<Uuid>,
    /// The upcast payload; `Null` when [`EventRecord::payload_text`] contains it instead.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub payload: Value,
    /// The payload exactly as stored, for events that need no upcasting: written as is,
    /// which spares parsing and re-encoding every payload.
    #[serde(skip)]
    pub payload_text: Option<String>,
}

impl EventRecord {
    /// The payload as JSON text.
    pub fn payload_json(&self) -> String {
        match &self.payload_text {
            Some(text) => text.clone(),
            None => self.payload.to_string(),
        }
    }
}

/// An access or security entry: a read of patient data, a login, a denied attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessRecord {
    pub position: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub recorded_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    pub request_id: Option<String>,
    /// The client's network address, opened from its sealed form; `None` when it was
    /// not recorded or the actor's data key has been destroyed.
    pub client_address: Option<String>,
    /// The sealed address as stored, for the replay to open.
    #[serde(skip)]
    pub sealed_client_address: Option<String>,
}

impl AuditRecord {
    pub fn recorded_at(&self) -> DateTime<Utc> {
        match self {
            AuditRecord::Event(event) => event.recorded_at,
            AuditRecord::Access(access) => access.recorded_at,
        }
    }

    pub fn patient_id(&self) -> Option<Uuid> {
        match self {
            AuditRecord::Event(event) => event.patient_id,
            AuditRecord::Access(access) => access.patient_id,
        }
    }

    /// Column names of [`AuditRecord::csv_row`].
    pub const CSV_HEADER: [&'static str; 15] = [
        "kind",
        "position",
        "recorded_at",
        "actor_id",
        "actor_role",
        "action",
        "target_type",
        "target_id",
        "sequence",
        "patient_id",
        "outcome",
        "request_id",
        "client_address",
        "event_version",
        "payload",
    ];

    /// One CSV row: events put their type in `action` and their aggregate in
    /// `target_type` and `target_id`; `payload` is the event's JSON.
    pub fn csv_row(&self) -> [String; 15] {
        let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
        let id = |value: Option<Uuid>| value.map(|id| id.to_string()).unwrap_or_default();
        let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        match self {
            AuditRecord::Event(event) => [
                "event".to_owned(),
                event.position.to_string(),
                time(event.recorded_at),
                text(event.actor_id.as_deref()),
                text(event.actor_role.as_deref()),
                event.event_type.to_string(),
                event.aggregate_type.to_string(),
                event.aggregate_id.clone(),
                event.sequence.to_string(),
                id(event.patient_id),
                "success".to_owned(),
                text(event.request_id.as_deref()),
                String::new(),
                event.event_version.to_string(),
                event.payload_json(),
            ],
            AuditRecord::Access(access) => [
                "access".to_owned(),
                access.position.to_string(),
                time(access.recorded_at),
                id(access.actor_id),
                text(access.actor_role.as_deref()),
                access.action.clone(),
                text(access.target_type.as_deref()),
                text(access.target_id.as_deref()),
                String::new(),
                id(access.patient_id),
                access.outcome.clone(),
                text(access.request_id.as_deref()),
                text(access.client_address.as_deref()),
                String::new(),
                String::new(),
            ],
        }
    }
}
