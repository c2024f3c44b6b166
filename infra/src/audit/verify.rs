//! Recomputes the hash chain of events and the hashes of audit entries, and checks every
//! checkpoint's signature and digest, streaming the rows in position order. Reports
//! either "intact" with the rows checked and the position sealed up to, or the first row
//! that does not match and why.

use std::collections::{BTreeSet, HashMap};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::chain::{EntryRow, EventRow, Hash, ENTRY_HASH_COLUMNS, EVENT_HASH_COLUMNS, GENESIS};
use super::checkpoint::{Checkpoint, RangeDigest, Stream, CHECKPOINT_COLUMNS};
use super::signing::TrustedKeys;

/// Rows fetched per round trip; memory stays bounded for any table size.
const FETCH_SIZE: i64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Position of the first row (or of the range start) that does not match.
    pub position: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub stream: &'static str,
    pub rows_checked: u64,
    pub checkpoints_checked: u64,
    /// Highest position covered by a verified checkpoint.
    pub sealed_up_to: i64,
    /// Rows after the last checkpoint: their hashes were checked, but nothing signed
    /// covers them yet.
    pub unsealed_rows: u64,
    /// The first mismatch; `None` when the stream is intact.
    pub problem: Option<Problem>,
}

impl StreamReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }

    /// One line for people: "intact: N rows checked; sealed up to position M …" or the
    /// first mismatch.
    pub fn summary(&self) -> String {
        match &self.problem {
            None => format!(
                "{}: intact: {} checked; sealed up to position {} by {}; {} not sealed yet",
                self.stream,
                count(self.rows_checked, "row"),
                self.sealed_up_to,
                count(self.checkpoints_checked, "checkpoint"),
                count(self.unsealed_rows, "row"),
            ),
            Some(problem) => format!(
                "{}: first mismatch at position {}: {}",
                self.stream, problem.position, problem.reason
            ),
        }
    }
}

/// Verifies both streams.
/// Default of the age after which a row must be covered by a checkpoint. The sealer
/// seals within two ticks (10 s by default), so this leaves ample room for a sealer
/// restart while still catching checkpoints that were deleted.
pub const MAX_UNSEALED_AGE: Duration = Duration::from_secs(15 * 60);

/// Verifies both streams. A row older than `max_unsealed_age` that no checkpoint covers
/// is a problem: its checkpoint was removed, or no sealer runs.
pub async fn verify_all(
    client: &mut Client,
    keys: &TrustedKeys,
    max_unsealed_age: Duration,
) -> anyhow::Result<Vec<StreamReport>> {
    let mut reports = Vec::new();
    for stream in Stream::ALL {
        reports.push(verify_stream(client, keys, stream, max_unsealed_age).await?);
    }
    Ok(reports)
}

pub async fn verify_stream(
    client: &mut Client,
    keys: &TrustedKeys,
    stream: Stream,
    max_unsealed_age: Duration,
) -> anyhow::Result<StreamReport> {
    let checkpoints: Vec<Checkpoint> = client
        .query(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints
                 WHERE stream = $1 ORDER BY first_position"
            ),
            &[&stream.as_str()],
        )
        .await?
        .iter()
        .map(Checkpoint::from_row)
        .collect();
    let mut walk = Walk::new(stream, checkpoints, max_unsealed_age);
    if let Some(problem) = walk.check_signatures(keys) {
        return Ok(walk.report(Some(problem)));
    }

    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let (columns, table) = match stream {
        Stream::Events => (EVENT_HASH_COLUMNS, "events"),
        Stream::AuditEntries => (ENTRY_HASH_COLUMNS, "audit_entries"),
    };
    transaction
        .batch_execute(&format!(
            "DECLARE verify NO SCROLL CURSOR FOR SELECT {columns} FROM {table} ORDER BY {}",
            stream.position_column()
        ))
        .await?;
    let fetch = transaction
        .prepare(&format!("FETCH {FETCH_SIZE} FROM verify"))
        .await?;
    let mut rows = transaction.query(&fetch, &[]).await?;
    while !rows.is_empty() {
        let check = async {
            for row in &rows {
                match stream {
                    Stream::Events => walk.event(EventRow::from_row(row))?,
                    Stream::AuditEntries => walk.entry(EntryRow::from_row(row))?,
                }
            }
            Ok::<(), Problem>(())
        };
        // `join` polls the fetch first, which sends it, so PostgreSQL reads the next
        // batch while this one is checked. A fetch past the end returns no rows.
        let (next, checked) = futures::future::join(transaction.query(&fetch, &[]), check).await;
        if let Err(problem) = checked {
            return Ok(walk.report(Some(problem)));
        }
        rows = next?;
    }
    let problem = walk.finish().err();
    Ok(walk.report(problem))
}

/// State of one pass over a stream.
struct Walk {
    stream: Stream,
    checkpoints: Vec<Checkpoint>,
    /// Index of the checkpoint covering the next position.
    current: usize,
    missing: BTreeSet<i64>,
    digest: Option<RangeDigest>,
    row_count: i64,
    /// Next position expected inside the current checkpoint.
    next_position: i64,
    /// Per aggregate (see [`aggregate_key`]): last sequence seen and its stored hash.
    chains: HashMap<u128, (i64, Hash)>,
    rows_checked: u64,
    checkpoints_checked: u64,
    unsealed_rows: u64,
    retention_cutoff: DateTime<Utc>,
    /// Rows recorded before this must be covered by a checkpoint.
    unsealed_cutoff: DateTime<Utc>,
}

impl Walk {
    fn new(stream: Stream, checkpoints: Vec<Checkpoint>, max_unsealed_age: Duration) -> Self {
        let now = Utc::now();
        let mut walk = Self {
            retention_cutoff: super::retention::retention_cutoff(now),
            unsealed_cutoff: now - max_unsealed_age,
            stream,
            checkpoints,
            current: 0,
            missing: BTreeSet::new(),
            digest: None,
            row_count: 0,
            next_position: 1,
            chains: HashMap::new(),
            rows_checked: 0,
            checkpoints_checked: 0,
            unsealed_rows: 0,
        };
        walk.open_checkpoint();
        walk
    }

    fn report(&self, problem: Option<Problem>) -> StreamReport {
        StreamReport {
            stream: self.stream.as_str(),
            rows_checked: self.rows_checked,
            checkpoints_checked: self.checkpoints_checked,
            sealed_up_to: self
                .current
                .checked_sub(1)
                .and_then(|index| self.checkpoints.get(index))
                .map_or(0, |checkpoint| checkpoint.last_position),
            unsealed_rows: self.unsealed_rows,
            problem,
        }
    }

    /// Checks that checkpoints are contiguous, chained and signed by a trusted key.
    fn check_signatures(&self, keys: &TrustedKeys) -> Option<Problem> {
        let mut previous_last = 0;
        let mut previous_digest = GENESIS.to_vec();
        for checkpoint in &self.checkpoints {
            let id = checkpoint.checkpoint_id;
            let reason = if checkpoint.first_position != previous_last + 1 {
                Some(format!(
                    "checkpoint {id} starts at position {} but the previous one ends at {previous_last}: a checkpoint was removed or altered",
                    checkpoint.first_position
                ))
            } else if checkpoint.previous_digest != previous_digest {
                Some(format!(
                    "checkpoint {id} does not chain to the digest of the checkpoint before it"
                ))
            } else if !keys.verify(
                &checkpoint.key_id,
                &checkpoint.signed_message(),
                &checkpoint.signature,
            ) {
                Some(format!(
                    "checkpoint {id} has no valid signature by a trusted key (key id {})",
                    checkpoint.key_id
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Some(Problem {
                    position: checkpoint.first_position,
                    reason,
                });
            }
            previous_last = checkpoint.last_position;
            previous_digest.clone_from(&checkpoint.digest);
        }
        None
    }

    /// True for an audit-entry checkpoint sealed before the retention cutoff: its
    /// entries may have been purged (`medflow audit purge`), so rows missing from it, or
    /// a digest over fewer rows, are expected.
    fn past_retention(&self, checkpoint: &Checkpoint) -> bool {
        self.stream == Stream::AuditEntries && checkpoint.sealed_at < self.retention_cutoff
    }

    fn open_checkpoint(&mut self) {
        match self.checkpoints.get(self.current) {
            Some(checkpoint) => {
                self.missing = checkpoint.missing.iter().copied().collect();
                self.digest = Some(RangeDigest::new(&checkpoint.previous_digest));
                self.row_count = 0;
                self.next_position = checkpoint.first_position;
            }
            None => self.digest = None,
        }
    }

    /// Accounts for `position` in the checkpoints; closes those that end before it.
    fn place(
        &mut self,
        position: i64,
        recorded_at: DateTime<Utc>,
        hash: &[u8],
    ) -> Result<(), Problem> {
        while let Some(checkpoint) = self.checkpoints.get(self.current) {
            if position <= checkpoint.last_position {
                break;
            }
            self.close_checkpoint()?;
        }
        let Some(checkpoint) = self.checkpoints.get(self.current) else {
            if recorded_at < self.unsealed_cutoff {
                return Err(Problem {
                    position,
                    reason: format!(
                        "the {} at position {position} was recorded at {recorded_at} but no checkpoint covers it: checkpoints were removed, or the sealer is not running",
                        self.stream.row_noun()
                    ),
                });
            }
            self.unsealed_rows += 1;
            return Ok(());
        };
        let id = checkpoint.checkpoint_id;
        let noun = self.stream.row_noun();
        if position < self.next_position {
            return Err(Problem {
                position,
                reason: format!("{noun} at position {position} appears twice or out of order"),
            });
        }
        let purgeable = self.past_retention(checkpoint);
        if let Some(absent) = (self.next_position..position).find(|p| !self.missing.contains(p)) {
            if !purgeable {
                return Err(missing_row(noun, absent, id));
            }
        }
        if self.missing.contains(&position) {
            return Err(Problem {
                position,
                reason: format!(
                    "position {position} was empty when checkpoint {id} was sealed: this {noun} was added or moved here"
                ),
            });
        }
        self.next_position = position + 1;
        self.row_count += 1;
        if let Some(digest) = self.digest.as_mut() {
            digest.add(position, hash);
        }
        Ok(())
    }

    fn close_checkpoint(&mut self) -> Result<(), Problem> {
        let Some(checkpoint) = self.checkpoints.get(self.current) else {
            return Ok(());
        };
        let id = checkpoint.checkpoint_id;
        let last = checkpoint.last_position;
        let first = checkpoint.first_position;
        let noun = self.stream.row_noun();
        let purgeable = self.past_retention(checkpoint);
        if let Some(absent) = (self.next_position..=last).find(|p| !self.missing.contains(p)) {
            if !purgeable {
                return Err(missing_row(noun, absent, id));
            }
        }
        let digest = self.digest.take().map(RangeDigest::finish);
        let matches = self.row_count == checkpoint.row_count
            && digest.as_ref().map(|digest| digest.as_slice()) == Some(&checkpoint.digest[..]);
        let purged = purgeable && self.row_count < checkpoint.row_count;
        if !(matches || purged) {
            return Err(Problem {
                position: first,
                reason: format!(
                    "the rows at positions {first} to {last} no longer match checkpoint {id}: a row in this range was rewritten together with its hash"
                ),
            });
        }
        self.checkpoints_checked += 1;
        self.current += 1;
        self.open_checkpoint();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Problem> {
        while self.current < self.checkpoints.len() {
            self.close_checkpoint()?;
        }
        Ok(())
    }

    fn event(&mut self, row: EventRow) -> Result<(), Problem> {
        self.rows_checked += 1;
        let position = row.global_position;
        // Checkpoints first: a row missing before this one is the first problem, not
        // this row's missing predecessor.
        self.place(position, row.recorded_at, &row.hash)?;
        let key = aggregate_key(&row.aggregate_type, &row.aggregate_id);
        let previous = if row.sequence <= 1 {
            GENESIS
        } else {
            match self.chains.get(&key) {
                Some((sequence, hash)) if *sequence == row.sequence - 1 => *hash,
                _ => {
                    return Err(Problem {
                        position,
                        reason: format!(
                            "event {} of {} {} has no predecessor (sequence {}) before it: an event was removed or moved",
                            row.sequence,
                            row.aggregate_type,
                            row.aggregate_id,
                            row.sequence - 1
                        ),
                    })
                }
            }
        };
        if row.expected_hash(&previous).as_slice() != row.hash.as_slice() {
            return Err(Problem {
                position,
                reason: format!(
                    "event {} of {} {} does not match its stored hash: its content, position or predecessor changed",
                    row.sequence, row.aggregate_type, row.aggregate_id
                ),
            });
        }
        let stored: Hash = row.hash.as_slice().try_into().map_err(|_| Problem {
            position,
            reason: "the stored hash is not 32 bytes".to_owned(),
        })?;
        self.chains.insert(key, (row.sequence, stored));
        Ok(())
    }

    fn entry(&mut self, row: EntryRow) -> Result<(), Problem> {
        self.rows_checked += 1;
        let position = row.entry_id;
        self.place(position, row.recorded_at, &row.hash)?;
        if row.expected_hash().as_slice() != row.hash.as_slice() {
            return Err(Problem {
                position,
                reason: format!(
                    "audit entry {position} does not match its stored hash: its content or position changed"
                ),
            });
        }
        Ok(())
    }
}

/// Identifies an aggregate by the first 128 bits of the SHA-256 of its type and id, so
/// the map of chain heads contains no strings. Two aggregates sharing a key (a chance of
/// about 2^-128 per pair) would make verify report a broken chain, not hide one.
fn aggregate_key(aggregate_type: &str, aggregate_id: &str) -> u128 {
    let mut digest = Sha256::new();
    digest.update((aggregate_type.len() as u64).to_be_bytes());
    digest.update(aggregate_type.as_bytes());
    digest.update(aggregate_id.as_bytes());
    let bytes: [u8; 16] = digest.finalize()[..16]
        .try_into()
        .expect("a SHA-256 digest has 32 bytes");
    u128::from_be_bytes(bytes)
}

fn missing_row(noun: &str, position: i64, checkpoint_id: i64) -> Problem {
    Problem {
        position,
        reason: format!(
            "the {noun} at position {position} is missing: checkpoint {checkpoint_id} sealed a row there"
        ),
    }
}

fn count(number: u64, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}
