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
/// stored.
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
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(apply_in(&writer, projection, event).await?);
        }
        outcomes
    };
    transaction.commit().await?;
    Ok(outcomes)
}

/// Applies one event inside a transaction that holds the projection lock.
async fn apply_in(
    transaction: &ReadModelTransaction<'_>,
    projection: &dyn Projection,
    event: &StoredEvent,
) -> anyhow::Result<Applied> {
    let last = last_sequence(
        transaction,
        projection.name(),
        &event.aggregate_type,
        &event.aggregate_id,
    )
    .await?;
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
    save_sequence(
        transaction,
        projection.name(),
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
    )
    .await?;
    Ok(Applied::Applied)
}

async fn last_sequence(
    transaction: &ReadModelTransaction<'_>,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = transaction
        .query_opt(
            "SELECT last_sequence FROM projection_offsets
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3
             FOR UPDATE",
            &[&projection, &aggregate_type, &aggregate_id],
        )
        .await?;
    Ok(row.map_or(0, |row| row.get(0)))
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
