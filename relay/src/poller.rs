//! Reads the next batch of events that can no longer be preceded by a late commit.

use deadpool_postgres::GenericClient;
use medflow_infra::events::{StoredEvent, STORED_EVENT_COLUMNS};

use crate::checkpoint::Checkpoint;

/// Returns up to `limit` events after `after`, in `(transaction_id, global_position)`
/// order, written by transactions below the current snapshot's `xmin` (see the crate
/// documentation for why this never skips a row).
pub async fn next_batch(
    client: &impl GenericClient,
    after: Checkpoint,
    limit: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let query = format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events
         WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
           AND (transaction_id, global_position) > ($1::text::xid8, $2)
         ORDER BY transaction_id, global_position
         LIMIT $3"
    );
    // Prepared once per connection: the relay runs this on every poll.
    let statement = client.prepare_cached(&query).await?;
    let rows = client
        .query(
            &statement,
            &[
                &after.transaction_id.to_string(),
                &after.global_position,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| StoredEvent::from_row(row).map_err(anyhow::Error::msg))
        .collect()
}

/// Counts events written but not yet relayed (including those still held back by an
/// open transaction).
pub async fn backlog(client: &impl GenericClient, after: Checkpoint) -> anyhow::Result<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
            &[&after.transaction_id.to_string(), &after.global_position],
        )
        .await?;
    Ok(row.get(0))
}
