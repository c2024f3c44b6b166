//! Signed checkpoints over the hash-chained streams, and the sealer that writes them.
//!
//! A checkpoint covers a range of positions of one stream. Its digest chains the
//! previous checkpoint's digest with the position and stored hash of every row in the
//! range, in position order, and the rows it lacks are listed (rolled-back inserts
//! leave gaps). The sealer signs all of it with a key the database does not hold, so
//! rewriting a sealed row, even together with its hash, is detected.
//!
//! A range is sealed only once it can no longer change: positions are taken from a
//! sequence when a row is inserted, and transactions commit out of order. The sealer
//! therefore notes the highest visible position and the snapshot's `xmax`; once every
//! transaction below that `xmax` has finished, no row at or below the noted position
//! can still appear, and the range is sealed on the next tick.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::chain::{Hash, GENESIS};
use super::signing::CheckpointSigner;

/// Largest range one checkpoint covers, so sealing a long backlog uses bounded memory.
const MAX_RANGE: i64 = 100_000;
const LOCK_KEY: &str = "medflow.audit.sealer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Events,
    AuditEntries,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Events, Stream::AuditEntries];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::AuditEntries => "audit_entries",
        }
    }

    pub fn position_column(self) -> &'static str {
        match self {
            Stream::Events => "global_position",
            Stream::AuditEntries => "entry_id",
        }
    }

    /// What one row of the stream is called in reports.
    pub fn row_noun(self) -> &'static str {
        match self {
            Stream::Events => "event",
            Stream::AuditEntries => "audit entry",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub checkpoint_id: i64,
    pub stream: String,
    pub first_position: i64,
    pub last_position: i64,
    pub row_count: i64,
    pub missing: Vec<i64>,
    pub previous_digest: Vec<u8>,
    pub digest: Vec<u8>,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub sealed_at: DateTime<Utc>,
}

pub const CHECKPOINT_COLUMNS: &str = "checkpoint_id, stream, first_position, last_position, \
     row_count, missing, previous_digest, digest, key_id, signature, sealed_at";

impl Checkpoint {
    pub fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            checkpoint_id: row.get(0),
            stream: row.get(1),
            first_position: row.get(2),
            last_position: row.get(3),
            row_count: row.get(4),
            missing: row.get(5),
            previous_digest: row.get(6),
            digest: row.get(7),
            key_id: row.get(8),
            signature: row.get(9),
            sealed_at: row.get(10),
        }
    }

    /// The bytes the signature covers: every column except the id, the time and the
    /// signature itself.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut message = b"medflow audit checkpoint v1\0".to_vec();
        message.extend_from_slice(self.stream.as_bytes());
        message.push(0);
        message.extend_from_slice(&self.first_position.to_be_bytes());
        message.extend_from_slice(&self.last_position.to_be_bytes());
        message.extend_from_slice(&self.row_count.to_be_bytes());
        let mut missing = Sha256::new();
        for position in &self.missing {
            missing.update(position.to_be_bytes());
        }
        message.extend_from_slice(&missing.finalize());
        message.extend_from_slice(&self.previous_digest);
        message.extend_from_slice(&self.digest);
        message.extend_from_slice(&self.sealed_at.timestamp_micros().to_be_bytes());
        message.extend_from_slice(self.key_id.as_bytes());
        message
    }
}

/// Running digest of a checkpoint's rows.
pub struct RangeDigest(Sha256);

impl RangeDigest {
    pub fn new(previous: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        Self(hasher)
    }

    pub fn add(&mut self, position: i64, hash: &[u8]) {
        self.0.update(position.to_be_bytes());
        self.0.update(hash);
    }

    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

/// Positions noted on one tick, sealed on a later one.
#[derive(Debug, Clone, Copy)]
struct Horizon {
    position: i64,
    xmax: u64,
}

pub struct Sealer {
    signer: CheckpointSigner,
    noted: HashMap<Stream, Horizon>,
}

impl Sealer {
    pub fn new(signer: CheckpointSigner) -> Self {
        Self {
            signer,
            noted: HashMap::new(),
        }
    }

    /// Seals what the previous tick noted, if it has settled, and notes the current
    /// horizon for the next tick. Returns the checkpoints written.
    pub async fn tick(&mut self, client: &mut Client) -> anyhow::Result<Vec<Checkpoint>> {
        let mut written = Vec::new();
        for stream in Stream::ALL {
            if let Some(horizon) = self.noted.get(&stream).copied() {
                if settled(client, horizon).await? {
                    written.extend(self.seal_up_to(client, stream, horizon.position).await?);
                    self.noted.remove(&stream);
                }
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = self.noted.entry(stream) {
                let horizon = current_horizon(client, stream).await?;
                if horizon.position > last_checkpoint(client, stream).await?.0 {
                    slot.insert(horizon);
                }
            }
        }
        Ok(written)
    }

    /// Seals every settled range now, waiting for running transactions; for the CLI
    /// and tests.
    pub async fn seal_now(&mut self, client: &mut Client) -> anyhow::Result<Vec<Checkpoint>> {
        let mut written = Vec::new();
        for stream in Stream::ALL {
            let horizon = current_horizon(client, stream).await?;
            while !settled(client, horizon).await? {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            written.extend(self.seal_up_to(client, stream, horizon.position).await?);
            self.noted.remove(&stream);
        }
        Ok(written)
    }

    async fn seal_up_to(
        &self,
        client: &mut Client,
        stream: Stream,
        upper: i64,
    ) -> anyhow::Result<Vec<Checkpoint>> {
        let mut written = Vec::new();
        loop {
            let transaction = client.transaction().await?;
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&LOCK_KEY],
                )
                .await?;
            let (last, previous_digest) = last_checkpoint(&transaction, stream).await?;
            if last >= upper {
                break;
            }
            let first = last + 1;
            let last = upper.min(last + MAX_RANGE);
            let column = stream.position_column();
            let rows = transaction
                .query(
                    &format!(
                        "SELECT {column}, hash FROM {table}
                         WHERE {column} BETWEEN $1 AND $2 ORDER BY {column}",
                        table = stream.as_str()
                    ),
                    &[&first, &last],
                )
                .await?;
            let mut digest = RangeDigest::new(&previous_digest);
            let mut missing = Vec::new();
            let mut expected = first;
            for row in &rows {
                let position: i64 = row.get(0);
                let hash: Vec<u8> = row.get(1);
                missing.extend(expected..position);
                expected = position + 1;
                digest.add(position, &hash);
            }
            missing.extend(expected..=last);
            let mut checkpoint = Checkpoint {
                checkpoint_id: 0,
                stream: stream.as_str().to_owned(),
                first_position: first,
                last_position: last,
                row_count: rows.len() as i64,
                missing,
                previous_digest,
                digest: digest.finish().to_vec(),
                key_id: self.signer.key_id().to_owned(),
                signature: Vec::new(),
                // Microseconds, as PostgreSQL stores them, so the signed time
                // reads back unchanged.
                sealed_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                    .unwrap_or_default(),
            };
            checkpoint.signature = self.signer.sign(&checkpoint.signed_message());
            let row = transaction
                .query_one(
                    &format!(
                        "INSERT INTO audit_checkpoints
                           (stream, first_position, last_position, row_count, missing,
                            previous_digest, digest, key_id, signature, sealed_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         RETURNING {CHECKPOINT_COLUMNS}"
                    ),
                    &[
                        &checkpoint.stream,
                        &checkpoint.first_position,
                        &checkpoint.last_position,
                        &checkpoint.row_count,
                        &checkpoint.missing,
                        &checkpoint.previous_digest,
                        &checkpoint.digest,
                        &checkpoint.key_id,
                        &checkpoint.signature,
                        &checkpoint.sealed_at,
                    ],
                )
                .await?;
            transaction.commit().await?;
            let checkpoint = Checkpoint::from_row(&row);
            tracing::info!(
                stream = stream.as_str(),
                first_position = checkpoint.first_position,
                last_position = checkpoint.last_position,
                rows = checkpoint.row_count,
                digest = hex::encode(&checkpoint.digest),
                "audit checkpoint sealed"
            );
            written.push(checkpoint);
        }
        Ok(written)
    }
}

async fn current_horizon(client: &Client, stream: Stream) -> anyhow::Result<Horizon> {
    let column = stream.position_column();
    let row = client
        .query_one(
            &format!(
                "SELECT coalesce(max({column}), 0),
                        pg_snapshot_xmax(pg_current_snapshot())::text
                 FROM {table}",
                table = stream.as_str()
            ),
            &[],
        )
        .await?;
    let xmax: String = row.get(1);
    Ok(Horizon {
        position: row.get(0),
        xmax: xmax.parse()?,
    })
}

/// True once every transaction that was running when `horizon` was noted has finished.
async fn settled(client: &Client, horizon: Horizon) -> anyhow::Result<bool> {
    let row = client
        .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])
        .await?;
    let xmin: String = row.get(0);
    Ok(xmin.parse::<u64>()? >= horizon.xmax)
}

/// The last sealed position of `stream` and its digest (0 and 32 zero bytes if none).
async fn last_checkpoint(
    client: &impl tokio_postgres::GenericClient,
    stream: Stream,
) -> anyhow::Result<(i64, Vec<u8>)> {
    let row = client
        .query_opt(
            "SELECT last_position, digest FROM audit_checkpoints
             WHERE stream = $1 ORDER BY last_position DESC LIMIT 1",
            &[&stream.as_str()],
        )
        .await?;
    Ok(row
        .map(|row| (row.get(0), row.get(1)))
        .unwrap_or((0, GENESIS.to_vec())))
}
