//! Retention of audit data: at least six years (HIPAA keeps compliance documentation
//! for six years). Events are never deleted: they are the system of record, and a
//! person's data in them is erased by destroying their data key. Audit entries older
//! than the retention period may be purged, and only by `medflow audit purge`; the
//! database refuses any other deletion (see the `audit_entries_append_only` trigger).

use chrono::{DateTime, Months, Utc};
use tokio_postgres::Client;

/// Retention period of audit entries, in months.
pub const RETENTION_MONTHS: u32 = 6 * 12;

/// The oldest instant whose entries must still be kept at `now`.
pub fn retention_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(RETENTION_MONTHS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(
        "refusing to purge entries recorded before {before}: audit entries are kept for six years, so the latest allowed date is {cutoff}"
    )]
    WithinRetention {
        before: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    },
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Deletes audit entries recorded before `before`, which must be at least six years
/// ago. Runs as the owner role; the database checks the same limit again.
pub async fn purge_entries_before(
    client: &mut Client,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64, PurgeError> {
    let cutoff = retention_cutoff(now);
    if before > cutoff {
        return Err(PurgeError::WithinRetention { before, cutoff });
    }
    let transaction = client.transaction().await?;
    transaction
        .batch_execute("SET LOCAL medflow.retention_purge = 'on'")
        .await?;
    let deleted = transaction
        .execute(
            "DELETE FROM audit_entries WHERE recorded_at < $1",
            &[&before],
        )
        .await?;
    transaction.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_six_calendar_years_back() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            retention_cutoff(now),
            DateTime::parse_from_rfc3339("2020-12-05T10:00:00Z").unwrap()
        );
        // 29 February falls back to the last day of February.
        let leap = DateTime::parse_from_rfc3339("2030-02-28T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            retention_cutoff(leap),
            DateTime::parse_from_rfc3339("2024-02-28T00:00:00Z").unwrap()
        );
    }
}
