use std::collections::HashMap;

use medflow_infra::events::{StoredEvent, STORED_EVENT_COLUMNS};
use tokio_postgres::{Client, Transaction};

use super::apply::save_sequence;
use super::{lock_key, Projection, ReadModelTransaction};

/// Rows fetched per round trip while replaying; bounds memory for any event count.
const FETCH_SIZE: i64 = 2000;

/// Drops the projection's state and replays every event of its aggregate types from
/// the event store, in one transaction. Live projectors block on the projection lock
/// meanwhile and, once it commits, skip what the rebuild already applied. Returns the
/// number of events replayed.
pub async fn rebuild(client: &mut Client, projection: &dyn Projection) -> anyhow::Result<u64> {
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&lock_key(projection.name())],
        )
        .await?;
    for table in projection.tables() {
        transaction
            .batch_execute(&format!("TRUNCATE {table}"))
            .await?;
    }
    transaction
        .execute(
            "DELETE FROM projection_offsets WHERE projection = $1",
            &[&projection.name()],
        )
        .await?;

    let writer = ReadModelTransaction::unprepared(&transaction);
    let replayed = replay_events(
        &transaction,
        projection,
        ReplayScope::AllEvents,
        async |events: &[StoredEvent]| {
            for event in events {
                projection.apply(&writer, event).await?;
            }
            Ok(())
        },
    )
    .await?;
    for ((aggregate_type, aggregate_id), sequence) in &replayed.last_sequences {
        save_sequence(
            &writer,
            projection.name(),
            aggregate_type,
            aggregate_id,
            *sequence,
        )
        .await?;
    }
    transaction.commit().await?;
    tracing::info!(
        projection = projection.name(),
        events = replayed.events,
        "projection rebuilt"
    );
    Ok(replayed.events)
}

/// Selection of the events of a projection's aggregate types that a replay reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum ReplayScope {
    /// Every event.
    AllEvents,
    /// Per aggregate, the events up to the `last_sequence` that `projection_offsets`
    /// stores for this projection: what the live projector has applied. An aggregate
    /// without an offsets row contributes nothing.
    AppliedByLiveProjector,
}

/// Summary of a replay.
pub(super) struct Replayed {
    pub events: u64,
    /// Last sequence replayed per `(aggregate_type, aggregate_id)`.
    pub last_sequences: HashMap<(String, String), i64>,
}

/// Reads the events of the projection's aggregate types that `scope` selects, in
/// `global_position` order through a cursor of `source`, and passes them to `apply` in
/// batches of at most `FETCH_SIZE`. Everything is read from the snapshot of `source`;
/// `apply` may write through another connection.
pub(super) async fn replay_events(
    source: &Transaction<'_>,
    projection: &dyn Projection,
    scope: ReplayScope,
    mut apply: impl AsyncFnMut(&[StoredEvent]) -> anyhow::Result<()>,
) -> anyhow::Result<Replayed> {
    let types: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    let name = projection.name();
    // Per aggregate, global position order equals sequence order: a later event can
    // only be inserted after the earlier one committed.
    match scope {
        ReplayScope::AllEvents => {
            let declare = format!(
                "DECLARE replay NO SCROLL CURSOR FOR
                 SELECT {STORED_EVENT_COLUMNS} FROM events
                 WHERE aggregate_type = ANY($1)
                 ORDER BY global_position"
            );
            source.execute(&declare, &[&types]).await?;
        }
        ReplayScope::AppliedByLiveProjector => {
            let declare = format!(
                "DECLARE replay NO SCROLL CURSOR FOR
                 SELECT {STORED_EVENT_COLUMNS} FROM events
                 WHERE aggregate_type = ANY($1)
                   AND EXISTS (
                     SELECT 1 FROM projection_offsets AS applied
                     WHERE applied.projection = $2
                       AND applied.aggregate_type = events.aggregate_type
                       AND applied.aggregate_id = events.aggregate_id
                       AND applied.last_sequence >= events.sequence)
                 ORDER BY global_position"
            );
            source.execute(&declare, &[&types, &name]).await?;
        }
    }
    let mut replayed = Replayed {
        events: 0,
        last_sequences: HashMap::new(),
    };
    loop {
        let rows = source
            .query(&format!("FETCH {FETCH_SIZE} FROM replay"), &[])
            .await?;
        if rows.is_empty() {
            break;
        }
        // Upcast like the Kafka runner does, so the projection receives only current versions.
        let events: Vec<StoredEvent> = rows
            .iter()
            .map(|row| {
                StoredEvent::from_row(row)
                    .map(StoredEvent::upcast)
                    .map_err(anyhow::Error::msg)
            })
            .collect::<Result<_, _>>()?;
        apply(&events).await?;
        replayed.events += events.len() as u64;
        for event in events {
            replayed
                .last_sequences
                .insert((event.aggregate_type, event.aggregate_id), event.sequence);
        }
    }
    source.execute("CLOSE replay", &[]).await?;
    Ok(replayed)
}
