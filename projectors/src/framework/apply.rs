use deadpool_postgres::StatementCache;
use medflow_infra::events::{StoredEvent, STORED_EVENT_COLUMNS};
use tokio_postgres::Client;

use super::{lock_key, Projection, ReadModelTransaction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event (and any missing predecessors) changed the read model.
    Applied,
    /// The event was already applied; nothing changed.
    Duplicate,
}

/// Applies `event` exactly once: the projection's last sequence for the aggregate is
/// read and advanced in the same transaction as the read-model change. If earlier
/// events of the aggregate never arrived, they are read from the event store first,
/// so the read model never skips a sequence. With `statements`, the cache of the
/// client's connection, every statement is prepared once and reused.
pub async fn apply_event(
    client: &mut Client,
    statements: Option<&StatementCache>,
    projection: &dyn Projection,
    event: &StoredEvent,
) -> anyhow::Result<Applied> {
    let outcomes =
        apply_events(client, statements, projection, std::slice::from_ref(event)).await?;
    Ok(outcomes[0])
}

/// Applies `events` in order like [`apply_event`], all in one transaction, so a batch
/// costs one commit; returns the outcome of each. On error nothing of the batch is
/// stored. The offsets of the batch's aggregates are read with one statement and saved
/// with another, whatever the number of events.
pub async fn apply_events(
    client: &mut Client,
    statements: Option<&StatementCache>,
    projection: &dyn Projection,
    events: &[StoredEvent],
) -> anyhow::Result<Vec<Applied>> {
    let transaction = client.transaction().await?;
    let outcomes = {
        let writer = match statements {
            Some(statements) => ReadModelTransaction::prepared(&transaction, statements),
            None => ReadModelTransaction::unprepared(&transaction),
        };
        writer
            .execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
                &[&lock_key(projection.name())],
            )
            .await?;
        let mut offsets = Offsets::read(&writer, projection.name(), events).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(apply_in(&writer, projection, event, &mut offsets).await?);
        }
        offsets.save(&writer, projection.name()).await?;
        outcomes
    };
    transaction.commit().await?;
    Ok(outcomes)
}

/// The offsets of a batch's aggregates, sorted by aggregate and locked until the batch
/// commits.
struct Offsets<'a> {
    aggregates: Vec<Offset<'a>>,
}

/// One aggregate's last applied sequence, and whether the batch advanced it.
struct Offset<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    last: i64,
    advanced: bool,
}

impl<'a> Offsets<'a> {
    /// Reads and locks the offsets of every aggregate that `events` belong to.
    async fn read(
        transaction: &ReadModelTransaction<'_>,
        projection: &str,
        events: &'a [StoredEvent],
    ) -> Result<Self, tokio_postgres::Error> {
        let mut keys: Vec<(&str, &str)> = events
            .iter()
            .map(|event| (event.aggregate_type.as_str(), event.aggregate_id.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (types, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        // One index lookup per key, in sorted order, so that concurrent batches lock
        // rows in the same order.
        let rows = transaction
            .query(
                "SELECT o.aggregate_type, o.aggregate_id, o.last_sequence
                 FROM unnest($2::text[], $3::text[]) AS batch (aggregate_type, aggregate_id)
                 CROSS JOIN LATERAL (
                     SELECT aggregate_type, aggregate_id, last_sequence FROM projection_offsets
                     WHERE projection = $1
                       AND aggregate_type = batch.aggregate_type
                       AND aggregate_id = batch.aggregate_id
                     FOR UPDATE) AS o",
                &[&projection, &types, &ids],
            )
            .await?;
        let mut offsets = Self {
            aggregates: keys
                .into_iter()
                .map(|(aggregate_type, aggregate_id)| Offset {
                    aggregate_type,
                    aggregate_id,
                    last: 0,
                    advanced: false,
                })
                .collect(),
        };
        for row in &rows {
            if let Some(index) = offsets.position(row.get(0), row.get(1)) {
                offsets.aggregates[index].last = row.get(2);
            }
        }
        Ok(offsets)
    }

    /// Returns the index of the aggregate's offset. Every aggregate of the batch has one.
    fn position(&self, aggregate_type: &str, aggregate_id: &str) -> Option<usize> {
        self.aggregates
            .binary_search_by(|offset| {
                (offset.aggregate_type, offset.aggregate_id).cmp(&(aggregate_type, aggregate_id))
            })
            .ok()
    }

    fn last(&self, event: &StoredEvent) -> i64 {
        self.position(&event.aggregate_type, &event.aggregate_id)
            .map_or(0, |index| self.aggregates[index].last)
    }

    fn advance(&mut self, event: &StoredEvent) {
        if let Some(index) = self.position(&event.aggregate_type, &event.aggregate_id) {
            let offset = &mut self.aggregates[index];
            offset.last = event.sequence;
            offset.advanced = true;
        }
    }

    /// Saves the advanced offsets in one statement, in the order the read locked them.
    /// An offset that a concurrent consumer inserted for a new aggregate (no row existed
    /// to lock) never moves back.
    async fn save(
        &self,
        transaction: &ReadModelTransaction<'_>,
        projection: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let advanced: Vec<&Offset> = self
            .aggregates
            .iter()
            .filter(|offset| offset.advanced)
            .collect();
        if advanced.is_empty() {
            return Ok(());
        }
        let types: Vec<&str> = advanced
            .iter()
            .map(|offset| offset.aggregate_type)
            .collect();
        let ids: Vec<&str> = advanced.iter().map(|offset| offset.aggregate_id).collect();
        let sequences: Vec<i64> = advanced.iter().map(|offset| offset.last).collect();
        transaction
            .execute(
                "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, updated_at)
                 SELECT $1, aggregate_type, aggregate_id, last_sequence, now()
                 FROM unnest($2::text[], $3::text[], $4::bigint[]) AS batch (aggregate_type, aggregate_id, last_sequence)
                 ON CONFLICT (projection, aggregate_type, aggregate_id)
                 DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at
                 WHERE projection_offsets.last_sequence < EXCLUDED.last_sequence",
                &[&projection, &types, &ids, &sequences],
            )
            .await?;
        Ok(())
    }
}

/// Applies one event inside a transaction that holds the projection lock and the
/// aggregate's offset.
async fn apply_in(
    transaction: &ReadModelTransaction<'_>,
    projection: &dyn Projection,
    event: &StoredEvent,
    offsets: &mut Offsets<'_>,
) -> anyhow::Result<Applied> {
    let last = offsets.last(event);
    if event.sequence <= last {
        return Ok(Applied::Duplicate);
    }
    if event.sequence > last + 1 {
        tracing::warn!(
            projection = projection.name(),
            aggregate_id = %event.aggregate_id,
            from = last + 1,
            to = event.sequence - 1,
            "events missing from the stream; reading them from the event store"
        );
        for missing in missing_events(transaction, event, last).await? {
            projection.apply(transaction, &missing).await?;
        }
    }
    projection.apply(transaction, event).await?;
    offsets.advance(event);
    Ok(Applied::Applied)
}

pub(super) async fn save_sequence(
    transaction: &ReadModelTransaction<'_>,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .execute(
            "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (projection, aggregate_type, aggregate_id)
             DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at",
            &[&projection, &aggregate_type, &aggregate_id, &sequence],
        )
        .await?;
    Ok(())
}

async fn missing_events(
    transaction: &ReadModelTransaction<'_>,
    event: &StoredEvent,
    after_sequence: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let query = format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence < $4
         ORDER BY sequence"
    );
    let rows = transaction
        .query(
            &query,
            &[
                &event.aggregate_type,
                &event.aggregate_id,
                &after_sequence,
                &event.sequence,
            ],
        )
        .await?;
    let events: Vec<StoredEvent> = rows
        .iter()
        .map(|row| {
            StoredEvent::from_row(row)
                .map(StoredEvent::upcast)
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<_, _>>()?;
    let expected = (event.sequence - after_sequence - 1) as usize;
    anyhow::ensure!(
        events.len() == expected,
        "event store holds {} of the {expected} events before sequence {} of {}",
        events.len(),
        event.sequence,
        event.aggregate_id
    );
    Ok(events)
}
