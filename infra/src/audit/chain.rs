//! The hashes the database stores with each event and audit entry, recomputed here
//! from the row's columns. The encoding matches `audit_field`, `audit_instant`,
//! `event_hash` and `audit_entry_hash` in schema/migrations/0008_audit_trail.sql:
//! integers as big-endian bytes, text as a 4-byte length and its UTF-8 bytes, a missing
//! value as length -1.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The predecessor hash of an aggregate's first event.
pub const GENESIS: Hash = [0; 32];

/// Columns an event's hash covers, as selected by [`EVENT_HASH_COLUMNS`].
#[derive(Debug, Clone)]
pub struct EventRow {
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload and metadata exactly as stored (`json` keeps the text as written).
    pub payload: String,
    pub metadata: String,
    pub transaction_id: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

pub const EVENT_HASH_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload::text, metadata::text, transaction_id::text, recorded_at, hash";

impl EventRow {
    pub fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            global_position: row.get(0),
            aggregate_type: row.get(1),
            aggregate_id: row.get(2),
            sequence: row.get(3),
            event_type: row.get(4),
            event_version: row.get(5),
            payload: row.get(6),
            metadata: row.get(7),
            transaction_id: row.get(8),
            recorded_at: row.get(9),
            hash: row.get(10),
        }
    }

    /// The hash this event must have, chained to `previous`.
    pub fn expected_hash(&self, previous: &Hash) -> Hash {
        let mut hasher = Encoder::default();
        hasher.bytes(previous);
        hasher.integer(self.global_position);
        hasher.text(Some(&self.aggregate_type));
        hasher.text(Some(&self.aggregate_id));
        hasher.integer(self.sequence);
        hasher.text(Some(&self.event_type));
        hasher.text(Some(&self.event_version));
        hasher.text(Some(&self.payload));
        hasher.text(Some(&self.metadata));
        hasher.text(Some(&self.transaction_id));
        hasher.instant(self.recorded_at);
        hasher.finish()
    }
}

/// Columns an audit entry's hash covers, as selected by [`ENTRY_HASH_COLUMNS`].
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub entry_id: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub client_address_index: Option<String>,
    pub client_address: Option<String>,
    pub transaction_id: String,
    pub hash: Vec<u8>,
}

pub const ENTRY_HASH_COLUMNS: &str = "entry_id, recorded_at, actor_id, actor_role, action, \
     target_type, target_id, patient_id, outcome, request_id, client_address_index, client_address, \
     transaction_id::text, hash";

impl EntryRow {
    pub fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            entry_id: row.get(0),
            recorded_at: row.get(1),
            actor_id: row.get(2),
            actor_role: row.get(3),
            action: row.get(4),
            target_type: row.get(5),
            target_id: row.get(6),
            patient_id: row.get(7),
            outcome: row.get(8),
            request_id: row.get(9),
            client_address_index: row.get(10),
            client_address: row.get(11),
            transaction_id: row.get(12),
            hash: row.get(13),
        }
    }

    pub fn expected_hash(&self) -> Hash {
        let uuid_text = |id: Option<Uuid>| id.map(|id| id.to_string());
        let mut hasher = Encoder::default();
        hasher.integer(self.entry_id);
        hasher.instant(self.recorded_at);
        hasher.text(uuid_text(self.actor_id).as_deref());
        hasher.text(self.actor_role.as_deref());
        hasher.text(Some(&self.action));
        hasher.text(self.target_type.as_deref());
        hasher.text(self.target_id.as_deref());
        hasher.text(uuid_text(self.patient_id).as_deref());
        hasher.text(Some(&self.outcome));
        hasher.text(self.request_id.as_deref());
        hasher.text(self.client_address_index.as_deref());
        hasher.text(self.client_address.as_deref());
        hasher.text(Some(&self.transaction_id));
        hasher.finish()
    }
}

#[derive(Default)]
struct Encoder(Sha256);

impl Encoder {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn integer(&mut self, value: i64) {
        self.0.update(value.to_be_bytes());
    }

    fn text(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update((-1i32).to_be_bytes()),
            Some(text) => {
                // A field longer than i32::MAX bytes cannot be stored in PostgreSQL.
                let length = i32::try_from(text.len()).unwrap_or(i32::MAX);
                self.0.update(length.to_be_bytes());
                self.0.update(text.as_bytes());
            }
        }
    }

    fn instant(&mut self, at: DateTime<Utc>) {
        self.integer(at.timestamp_micros());
    }

    fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventRow {
        EventRow {
            global_position: 7,
            aggregate_type: "account".into(),
            aggregate_id: "a".into(),
            sequence: 1,
            event_type: "AccountRegistered".into(),
            event_version: "1".into(),
            payload: "{}".into(),
            metadata: "{}".into(),
            transaction_id: "900".into(),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            hash: Vec::new(),
        }
    }

    #[test]
    fn every_column_changes_the_hash() {
        let base = event().expected_hash(&GENESIS);
        let mut moved = event();
        moved.global_position = 8;
        assert_ne!(moved.expected_hash(&GENESIS), base);
        let mut edited = event();
        edited.payload = "{ }".into();
        assert_ne!(edited.expected_hash(&GENESIS), base);
        assert_ne!(event().expected_hash(&[1; 32]), base);
    }

    #[test]
    fn field_boundaries_are_part_of_the_hash() {
        let mut left = event();
        left.aggregate_type = "ab".into();
        left.aggregate_id = "c".into();
        let mut right = event();
        right.aggregate_type = "a".into();
        right.aggregate_id = "bc".into();
        assert_ne!(left.expected_hash(&GENESIS), right.expected_hash(&GENESIS));
    }
}
