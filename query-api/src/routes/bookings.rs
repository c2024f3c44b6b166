//! Booked intervals from the `appointments` read model, which the slot list and the
//! directory's next free slot subtract.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use medflow_domain::availability::TimeRange;
use medflow_infra::web::ApiError;
use uuid::Uuid;

/// Returns, per doctor, the intervals of appointments that hold their slot and overlap
/// `[from, to)`.
pub async fn booked_ranges(
    client: &Client,
    doctors: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<TimeRange>>, ApiError> {
    let rows = client
        .query(
            "SELECT doctor_id, starts_at, ends_at FROM appointments
             WHERE doctor_id = ANY($1) AND status IN ('booked', 'in_progress')
               AND starts_at < $3 AND ends_at > $2
             ORDER BY doctor_id, starts_at",
            &[&doctors, &from, &to],
        )
        .await
        .map_err(ApiError::internal)?;
    let mut booked: HashMap<Uuid, Vec<TimeRange>> = HashMap::new();
    for row in rows {
        let range = TimeRange::new("booked", row.get(1), row.get(2)).map_err(ApiError::internal)?;
        booked.entry(row.get(0)).or_default().push(range);
    }
    Ok(booked)
}
