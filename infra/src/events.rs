//! The wire form of a committed event, as the relay reads it from the event table and
//! publishes it to Kafka, and as projectors consume it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Kafka header names the relay sets on every record.
pub mod headers {
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    pub const EVENT_TYPE: &str = "event_type";
    pub const EVENT_VERSION: &str = "event_version";
    pub const SEQUENCE: &str = "sequence";
    pub const GLOBAL_POSITION: &str = "global_position";
}

/// One row of the event table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub global_position: i64,
    /// The writing transaction's id (PostgreSQL `xid8`).
    pub transaction_id: u64,
    pub recorded_at: DateTime<Utc>,
}

/// Columns selected wherever a [`StoredEvent`] is read with tokio-postgres.
pub const STORED_EVENT_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload::jsonb, metadata::jsonb, global_position, transaction_id::text, recorded_at";

impl StoredEvent {
    /// Builds an event from a row selected with [`STORED_EVENT_COLUMNS`].
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, String> {
        let transaction_id: String = row.get(8);
        Ok(Self {
            aggregate_type: row.get(0),
            aggregate_id: row.get(1),
            sequence: row.get(2),
            event_type: row.get(3),
            event_version: row.get(4),
            payload: row.get(5),
            metadata: row.get(6),
            global_position: row.get(7),
            transaction_id: transaction_id
                .parse()
                .map_err(|_| format!("transaction id '{transaction_id}' is not a 64-bit number"))?,
            recorded_at: row.get(9),
        })
    }

    /// This event in its current form, through the domain's upcasters (see
    /// `medflow_domain::upcasting`). Readers call this; the relay publishes events as
    /// stored.
    pub fn upcast(self) -> Self {
        let Self {
            aggregate_type,
            aggregate_id,
            sequence,
            event_type,
            event_version,
            payload,
            metadata,
            global_position,
            transaction_id,
            recorded_at,
        } = self;
        let serialized = cqrs_es::persist::SerializedEvent::new(
            aggregate_id,
            usize::try_from(sequence).unwrap_or_default(),
            aggregate_type,
            event_type,
            event_version,
            payload,
            metadata,
        );
        let current = medflow_domain::upcasting::upcast(serialized);
        Self {
            aggregate_type: current.aggregate_type,
            aggregate_id: current.aggregate_id,
            sequence,
            event_type: current.event_type,
            event_version: current.event_version,
            payload: current.payload,
            metadata: current.metadata,
            global_position,
            transaction_id,
            recorded_at,
        }
    }
}
