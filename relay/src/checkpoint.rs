//! The relay's durable position: the last `(transaction_id, global_position)` whose
//! record Kafka acknowledged.

use deadpool_postgres::GenericClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub transaction_id: u64,
    pub global_position: i64,
}

pub async fn load(
    client: &impl GenericClient,
    relay_name: &str,
) -> Result<Checkpoint, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text, global_position FROM relay_checkpoints WHERE relay_name = $1",
            &[&relay_name],
        )
        .await?;
    Ok(row.map_or(Checkpoint::default(), |row| Checkpoint {
        transaction_id: row.get::<_, String>(0).parse().unwrap_or(0),
        global_position: row.get(1),
    }))
}

pub async fn save(
    client: &impl GenericClient,
    relay_name: &str,
    checkpoint: Checkpoint,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "INSERT INTO relay_checkpoints (relay_name, transaction_id, global_position, updated_at)
             VALUES ($1, $2::text::xid8, $3, now())
             ON CONFLICT (relay_name) DO UPDATE
               SET transaction_id = EXCLUDED.transaction_id,
                   global_position = EXCLUDED.global_position,
                   updated_at = EXCLUDED.updated_at",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &relay_name,
                &checkpoint.transaction_id.to_string(),
                &checkpoint.global_position,
            ],
        )
        .await?;
    Ok(())
}
