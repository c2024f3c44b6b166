//! Replay of the audit trail: events and access entries in order, filtered, read in
//! batches through two server-side cursors of one read-only snapshot, so memory stays
//! flat for any number of rows.
//!
//! Order: events by global position (which keeps every aggregate's sequence order) and
//! access entries by entry id, merged by recording time.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use medflow_domain::values::SealedValue;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::records::{AccessRecord, AuditRecord, EventRecord};
use crate::crypto::keys::KeyRing;
use crate::events::StoredEvent;

/// Values of the `aggregate_type` filter: the aggregate types of events and the target
/// types of access entries. Access entries name a target by the route's last path
/// parameter unless the handler names it, so a route with a new parameter adds a type here.
pub const RECORD_TYPES: &[&str] = &[
    "account",
    "appointment",
    "audit_trail",
    "doctor",
    "doctor_schedule",
    "license_document",
    "notification",
    "notifications",
    "patient",
    "session",
    "time_off",
];

/// Record types whose ids are UUIDs. With one of them, an `aggregate_id` filter that is
/// not a UUID could never match, so it is rejected. Other targets have free-text ids
/// (the access entries of a replay name `replay`, for example).
const UUID_KEYED_TYPES: &[&str] = &["account", "appointment", "doctor", "patient"];

/// Returns why `aggregate_id` cannot match any record of `aggregate_type`, if so.
pub fn aggregate_id_problem(aggregate_type: Option<&str>, aggregate_id: &str) -> Option<String> {
    let aggregate_type = aggregate_type.filter(|kind| UUID_KEYED_TYPES.contains(kind))?;
    if Uuid::parse_str(aggregate_id).is_ok() {
        return None;
    }
    Some(format!(
        "'{}' is not a valid UUID, which every {aggregate_type} id is",
        aggregate_id
            .chars()
            .take(40)
            .collect::<String>()
            .escape_default()
    ))
}

/// Rows fetched per cursor round trip.
pub const BATCH_SIZE: i64 = 2_000;

/// Which records a replay returns. Every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayFilter {
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
    /// Events of this aggregate type; access entries with this target type.
    pub aggregate_type: Option<String>,
    /// Events of this aggregate; access entries with this target id.
    pub aggregate_id: Option<String>,
    pub actor_id: Option<Uuid>,
    /// Events of aggregates about this person, and access entries touching them.
    pub patient_id: Option<Uuid>,
    pub include_events: bool,
    pub include_access: bool,
}

impl ReplayFilter {
    /// Both kinds of records, no other restriction.
    pub fn everything() -> Self {
        Self {
            include_events: true,
            include_access: true,
            ..Self::default()
        }
    }
}

/// SQL `WHERE` text and its parameters.
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Conditions {
    fn new() -> Self {
        Self {
            clauses: vec!["true".to_owned()],
            params: Vec::new(),
        }
    }

    fn push(&mut self, clause: impl Fn(usize) -> String, value: Box<dyn ToSql + Sync + Send>) {
        self.params.push(value);
        self.clauses.push(clause(self.params.len()));
    }

    fn text(&self) -> String {
        self.clauses.join(" AND ")
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|param| param.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn event_conditions(filter: &ReplayFilter) -> Conditions {
    let mut conditions = Conditions::new();
    if let Some(from) = filter.from {
        conditions.push(|n| format!("e.recorded_at >= ${n}"), Box::new(from));
    }
    if let Some(to) = filter.to {
        conditions.push(|n| format!("e.recorded_at < ${n}"), Box::new(to));
    }
    if let Some(aggregate_type) = &filter.aggregate_type {
        conditions.push(
            |n| format!("e.aggregate_type = ${n}"),
            Box::new(aggregate_type.clone()),
        );
    }
    if let Some(aggregate_id) = &filter.aggregate_id {
        conditions.push(
            |n| format!("e.aggregate_id = ${n}"),
            Box::new(aggregate_id.clone()),
        );
    }
    if let Some(actor) = filter.actor_id {
        conditions.push(
            |n| format!("e.metadata ->> 'actor_id' = ${n}"),
            Box::new(actor.to_string()),
        );
    }
    if let Some(patient) = filter.patient_id {
        conditions.push(
            |n| {
                format!(
                    "(e.aggregate_type, e.aggregate_id) IN
                       (SELECT aggregate_type, aggregate_id FROM event_subjects WHERE subject_id = ${n})"
                )
            },
            Box::new(patient),
        );
    }
    conditions
}

fn access_conditions(filter: &ReplayFilter) -> Conditions {
    let mut conditions = Conditions::new();
    if let Some(from) = filter.from {
        conditions.push(|n| format!("recorded_at >= ${n}"), Box::new(from));
    }
    if let Some(to) = filter.to {
        conditions.push(|n| format!("recorded_at < ${n}"), Box::new(to));
    }
    if let Some(aggregate_type) = &filter.aggregate_type {
        conditions.push(
            |n| format!("target_type = ${n}"),
            Box::new(aggregate_type.clone()),
        );
    }
    if let Some(aggregate_id) = &filter.aggregate_id {
        conditions.push(
            |n| format!("target_id = ${n}"),
            Box::new(aggregate_id.clone()),
        );
    }
    if let Some(actor) = filter.actor_id {
        conditions.push(|n| format!("actor_id = ${n}"), Box::new(actor));
    }
    if let Some(patient) = filter.patient_id {
        conditions.push(|n| format!("patient_id = ${n}"), Box::new(patient));
    }
    conditions
}

const EVENT_COLUMNS: &str = "e.global_position, e.recorded_at, e.aggregate_type, e.aggregate_id, \
     e.sequence, e.event_type, e.event_version, e.payload::text, e.metadata::text, e.subject_id";

/// Events with their subject, which the sealing trigger writes into each row.
const EVENT_SOURCE: &str = "events e";

const ACCESS_COLUMNS: &str = "entry_id, recorded_at, actor_id, actor_role, action, target_type, \
     target_id, patient_id, outcome, request_id, client_address";

/// One side of the merge: a cursor, the rows fetched but not yet returned, and the
/// next batch of rows, which PostgreSQL produces while this one is decoded.
struct Side {
    cursor: &'static str,
    /// `FETCH` prepared once, so every round trip is a bind and execute only.
    fetch: Option<Statement>,
    buffer: VecDeque<AuditRecord>,
    ahead: Option<Vec<Row>>,
    exhausted: bool,
    interners: Interners,
}

impl Side {
    async fn new(client: &Client, cursor: &'static str, enabled: bool) -> anyhow::Result<Self> {
        let fetch = if enabled {
            Some(
                client
                    .prepare(&format!("FETCH {BATCH_SIZE} FROM {cursor}"))
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            cursor,
            fetch,
            buffer: VecDeque::new(),
            ahead: None,
            exhausted: !enabled,
            interners: Interners::default(),
        })
    }

    async fn fill(&mut self, client: &Client) -> anyhow::Result<()> {
        if !self.buffer.is_empty() || self.exhausted {
            return Ok(());
        }
        let Some(fetch) = &self.fetch else {
            return Ok(());
        };
        let rows = match self.ahead.take() {
            Some(rows) => rows,
            None => client.query(fetch, &[]).await?,
        };
        let last = rows.len() < BATCH_SIZE as usize;
        let cursor = self.cursor;
        let interners = &mut self.interners;
        let decode = async {
            rows.iter()
                .map(|row| {
                    if cursor == "replay_events" {
                        event_record(row, interners)
                    } else {
                        Ok(access_record(row))
                    }
                })
                .collect::<anyhow::Result<VecDeque<_>>>()
        };
        if last {
            self.exhausted = true;
            self.buffer = decode.await?;
        } else {
            // `join` polls the fetch first, which sends it, so the decoding runs while
            // the server reads the next batch.
            let (next, decoded) = futures::future::join(client.query(fetch, &[]), decode).await;
            self.ahead = Some(next?);
            self.buffer = decoded?;
        }
        Ok(())
    }
}

/// A replay in progress on one connection. Call [`Replay::start`], then
/// [`Replay::next_batch`] until it returns an empty batch, then [`Replay::finish`].
pub struct Replay {
    events: Side,
    access: Side,
}

impl Replay {
    /// Opens a read-only snapshot and the cursors on `client`, which must not be used
    /// for anything else until [`Replay::finish`].
    pub async fn start(client: &Client, filter: &ReplayFilter) -> anyhow::Result<Self> {
        // A replay reads its whole selection, so plan the cursors for all rows, not for
        // the first tenth (PostgreSQL's default for cursors).
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SET LOCAL cursor_tuple_fraction = 1.0",
            )
            .await?;
        if filter.include_events {
            let conditions = event_conditions(filter);
            client
                .execute(
                    &format!(
                        "DECLARE replay_events NO SCROLL CURSOR FOR
                         SELECT {EVENT_COLUMNS} FROM {EVENT_SOURCE}
                         WHERE {} ORDER BY e.global_position",
                        conditions.text()
                    ),
                    &conditions.params(),
                )
                .await?;
        }
        if filter.include_access {
            let conditions = access_conditions(filter);
            client
                .execute(
                    &format!(
                        "DECLARE replay_access NO SCROLL CURSOR FOR
                         SELECT {ACCESS_COLUMNS} FROM audit_entries
                         WHERE {} ORDER BY entry_id",
                        conditions.text()
                    ),
                    &conditions.params(),
                )
                .await?;
        }
        Ok(Self {
            events: Side::new(client, "replay_events", filter.include_events).await?,
            access: Side::new(client, "replay_access", filter.include_access).await?,
        })
    }

    /// The next records in order; empty once both cursors are exhausted.
    pub async fn next_batch(&mut self, client: &Client) -> anyhow::Result<Vec<AuditRecord>> {
        let mut batch = Vec::with_capacity(BATCH_SIZE as usize);
        while batch.len() < BATCH_SIZE as usize {
            self.events.fill(client).await?;
            self.access.fill(client).await?;
            let take_event = match (self.events.buffer.front(), self.access.buffer.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(event), Some(access)) => event.recorded_at() <= access.recorded_at(),
            };
            let side = if take_event {
                &mut self.events
            } else {
                &mut self.access
            };
            batch.extend(side.buffer.pop_front());
        }
        Ok(batch)
    }

    pub async fn finish(self, client: &Client) -> anyhow::Result<()> {
        client.batch_execute("COMMIT").await?;
        Ok(())
    }
}

/// Distinct values kept by an [`Interner`]; more are still returned, just not shared.
const INTERNED_VALUES: usize = 1024;

/// Shares one allocation per distinct value of a column with few distinct values among
/// the records of a replay. Consecutive events often repeat a value, so the previous one
/// is compared first. The number of kept values is bounded, so unexpected data cannot
/// make it grow for good.
#[derive(Default)]
struct Interner {
    previous: Option<Arc<str>>,
    values: HashSet<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(previous) = &self.previous {
            if **previous == *value {
                return Arc::clone(previous);
            }
        }
        let shared = match self.values.get(value) {
            Some(kept) => Arc::clone(kept),
            None => {
                let shared: Arc<str> = Arc::from(value);
                if self.values.len() < INTERNED_VALUES {
                    self.values.insert(Arc::clone(&shared));
                }
                shared
            }
        };
        self.previous = Some(Arc::clone(&shared));
        shared
    }
}

/// One [`Interner`] per shared column of [`EventRecord`].
#[derive(Default)]
struct Interners {
    aggregate_types: Interner,
    event_types: Interner,
    event_versions: Interner,
    actor_roles: Interner,
}

/// The metadata fields a replay shows, borrowed from the row where no JSON escape
/// forces a copy.
#[derive(serde::Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    actor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor_role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
}

fn event_record(row: &Row, interners: &mut Interners) -> anyhow::Result<AuditRecord> {
    let payload: &str = row.get(7);
    let metadata: &str = row.get(8);
    let event_type: &str = row.get(5);
    let event_version: &str = row.get(6);
    // JSON lines need single-line payloads; postgres-es writes them compact.
    if !medflow_domain::upcasting::needs_upcast(event_type, event_version)
        && !payload.contains('\n')
    {
        let meta: Metadata = serde_json::from_str(metadata)?;
        return Ok(AuditRecord::Event(EventRecord {
            position: row.get(0),
            recorded_at: row.get(1),
            aggregate_type: interners.aggregate_types.intern(row.get(2)),
            aggregate_id: row.get(3),
            sequence: row.get(4),
            event_type: interners.event_types.intern(event_type),
            event_version: interners.event_versions.intern(event_version),
            actor_id: meta.actor_id.map(Cow::into_owned),
            actor_role: meta
                .actor_role
                .map(|role| interners.actor_roles.intern(&role)),
            request_id: meta.request_id.map(Cow::into_owned),
            patient_id: row.get(9),
            payload: serde_json::Value::Null,
            payload_text: Some(payload.to_owned()),
        }));
    }
    let stored = StoredEvent {
        aggregate_type: row.get(2),
        aggregate_id: row.get(3),
        sequence: row.get(4),
        event_type: event_type.to_owned(),
        event_version: event_version.to_owned(),
        payload: serde_json::from_str(payload)?,
        metadata: serde_json::from_str(metadata)?,
        global_position: row.get(0),
        transaction_id: 0,
        recorded_at: row.get(1),
    }
    .upcast();
    let meta = |key: &str| stored.metadata.get(key).and_then(|value| value.as_str());
    Ok(AuditRecord::Event(EventRecord {
        position: stored.global_position,
        recorded_at: stored.recorded_at,
        actor_id: meta("actor_id").map(str::to_owned),
        actor_role: meta("actor_role").map(|role| interners.actor_roles.intern(role)),
        request_id: meta("request_id").map(str::to_owned),
        patient_id: row.get(9),
        aggregate_type: interners.aggregate_types.intern(&stored.aggregate_type),
        aggregate_id: stored.aggregate_id,
        sequence: stored.sequence,
        event_type: interners.event_types.intern(&stored.event_type),
        event_version: interners.event_versions.intern(&stored.event_version),
        payload: stored.payload,
        payload_text: None,
    }))
}

fn access_record(row: &Row) -> AuditRecord {
    AuditRecord::Access(AccessRecord {
        position: row.get(0),
        recorded_at: row.get(1),
        actor_id: row.get(2),
        actor_role: row.get(3),
        action: row.get(4),
        target_type: row.get(5),
        target_id: row.get(6),
        patient_id: row.get(7),
        outcome: row.get(8),
        request_id: row.get(9),
        client_address: None,
        sealed_client_address: row.get(10),
    })
}

/// Opens the sealed client addresses of a batch with the actors' data keys. An address
/// whose key is gone, or that cannot be opened, stays `None`.
pub async fn open_client_addresses(keys: &KeyRing, batch: &mut [AuditRecord]) {
    for record in batch {
        let AuditRecord::Access(access) = record else {
            continue;
        };
        let (Some(actor), Some(sealed)) = (access.actor_id, access.sealed_client_address.take())
        else {
            continue;
        };
        let Ok(sealed) = serde_json::from_str::<SealedValue>(&sealed) else {
            continue;
        };
        access.client_address = keys
            .open_text(actor, CLIENT_ADDRESS_FIELD, &sealed)
            .await
            .ok();
    }
}

/// Field name that binds a sealed client address to its purpose.
pub const CLIENT_ADDRESS_FIELD: &str = "client_address";

/// Output formats of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "jsonl" => Some(Format::JsonLines),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::JsonLines => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// Bytes that open the output (the CSV header).
    pub fn header(self) -> anyhow::Result<Vec<u8>> {
        match self {
            Format::JsonLines => Ok(Vec::new()),
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(Vec::new());
                writer.write_record(AuditRecord::CSV_HEADER)?;
                Ok(writer.into_inner()?)
            }
        }
    }

    /// One batch of records in this format.
    pub fn encode(self, batch: &[AuditRecord]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(batch.len() * 256);
        self.encode_into(batch, &mut out)?;
        Ok(out)
    }

    /// Appends one batch of records in this format to `out`, so that a caller can reuse
    /// one buffer for every batch.
    pub fn encode_into(self, batch: &[AuditRecord], out: &mut Vec<u8>) -> anyhow::Result<()> {
        match self {
            Format::JsonLines => {
                for record in batch {
                    serde_json::to_writer(&mut *out, record)?;
                    if let AuditRecord::Event(EventRecord {
                        payload_text: Some(text),
                        ..
                    }) = record
                    {
                        // The object's closing brace makes way for the stored payload.
                        out.pop();
                        out.extend_from_slice(b",\"payload\":");
                        out.extend_from_slice(text.as_bytes());
                        out.push(b'}');
                    }
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(&mut *out);
                for record in batch {
                    writer.write_record(record.csv_row())?;
                }
                writer.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: serde_json::Value, payload_text: Option<&str>) -> AuditRecord {
        AuditRecord::Event(EventRecord {
            position: 3,
            recorded_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            aggregate_type: "appointment".into(),
            aggregate_id: "a1".into(),
            sequence: 2,
            event_type: "AppointmentCancelled".into(),
            event_version: "1".into(),
            actor_id: Some("p1".into()),
            actor_role: Some("patient".into()),
            request_id: None,
            patient_id: None,
            payload,
            payload_text: payload_text.map(str::to_owned),
        })
    }

    #[test]
    fn stored_and_upcast_payloads_encode_alike() {
        let stored = r#"{"AppointmentCancelled":{"cancelled_by":"patient"}}"#;
        let raw = event(serde_json::Value::Null, Some(stored));
        let parsed = event(serde_json::from_str(stored).unwrap(), None);
        let lines: Vec<serde_json::Value> = [raw, parsed]
            .iter()
            .map(|record| {
                let bytes = Format::JsonLines
                    .encode(std::slice::from_ref(record))
                    .unwrap();
                assert_eq!(bytes.iter().filter(|byte| **byte == b'\n').count(), 1);
                serde_json::from_slice(&bytes).unwrap()
            })
            .collect();
        assert_eq!(lines[0], lines[1]);
        assert_eq!(
            lines[0]["payload"]["AppointmentCancelled"]["cancelled_by"],
            "patient"
        );
        assert_eq!(lines[0]["kind"], "event");
    }
}
