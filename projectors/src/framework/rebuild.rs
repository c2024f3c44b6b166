use std::collections::HashMap;

use medflow_infra::events::{StoredEvent, STORED_EVENT_COLUMNS};
use tokio_postgres::Client;

use super::apply::save_sequence;
use super::{lock_key, Projection};

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

    let types: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    // Per aggregate, global position order equals sequence order: a later event can
    // only be inserted after the earlier one committed.
    let declare = format!(
        "DECLARE replay NO SCROLL CURSOR FOR
         SELECT {STORED_EVENT_COLUMNS} FROM events
         WHERE aggregate_type = ANY($1)
         ORDER BY global_position"
    );
    transaction.execute(&declare, &[&types]).await?;
    let mut replayed = 0u64;
    let mut last_per_aggregate: HashMap<(String, String), i64> = HashMap::new();
    loop {
        let rows = transaction
            .query(&format!("FETCH {FETCH_SIZE} FROM replay"), &[])
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = StoredEvent::from_row(row).map_err(anyhow::Error::msg)?;
            projection.apply(&transaction, &event).await?;
            replayed += 1;
            last_per_aggregate.insert((event.aggregate_type, event.aggregate_id), event.sequence);
        }
    }
    transaction.execute("CLOSE replay", &[]).await?;
    for ((aggregate_type, aggregate_id), sequence) in &last_per_aggregate {
        save_sequence(
            &transaction,
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
        events = replayed,
        "projection rebuilt"
    );
    Ok(replayed)
}
