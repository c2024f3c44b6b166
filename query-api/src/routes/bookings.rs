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
    let statement = client
        .prepare_cached(
            "SELECT doctor_id, starts_at, ends_at FROM appointments
             WHERE doctor_id = ANY($1) AND status IN ('booked', 'in_progress')
               AND starts_at < $3 AND ends_at > $2
             ORDER BY doctor_id, starts_at",
        )
        .await
        .map_err(ApiError::internal)?;
    let rows = client
        .query(&statement, &[&doctors, &from, &to])
        .await
        .map_err(ApiError::internal)?;
    let mut booked: HashMap<Uuid, Vec<TimeRange>> = HashMap::new();
    for row in rows {
        let range = TimeRange::new("booked", row.get(1), row.get(2)).map_err(ApiError::internal)?;
        booked.entry(row.get(0)).or_default().push(range);
    }
    Ok(booked)
}

/// Returns, per doctor, the intervals of appointments that hold their slot, end after
/// `from` and start before that doctor's entry in `until` (`doctors` and `until` pair up
/// by position).
pub async fn booked_ranges_until(
    client: &Client,
    doctors: &[Uuid],
    until: &[DateTime<Utc>],
    from: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<TimeRange>>, ApiError> {
    let statement = client
        .prepare_cached(
            "SELECT a.doctor_id, a.starts_at, a.ends_at
             FROM unnest($1::uuid[], $2::timestamptz[]) AS wanted (doctor_id, until)
             JOIN appointments a ON a.doctor_id = wanted.doctor_id
             WHERE a.status IN ('booked', 'in_progress')
               AND a.starts_at < wanted.until AND a.ends_at > $3
             ORDER BY a.doctor_id, a.starts_at",
        )
        .await
        .map_err(ApiError::internal)?;
    let rows = client
        .query(&statement, &[&doctors, &until, &from])
        .await
        .map_err(ApiError::internal)?;
    let mut booked: HashMap<Uuid, Vec<TimeRange>> = HashMap::new();
    for row in rows {
        let range = TimeRange::new("booked", row.get(1), row.get(2)).map_err(ApiError::internal)?;
        booked.entry(row.get(0)).or_default().push(range);
    }
    Ok(booked)
}
