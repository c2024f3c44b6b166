//! Read-your-writes: wait until a projection has applied an aggregate's sequence.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use medflow_domain::values::truncate;
use medflow_domain::FieldError;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::IntoParams;

const POLL_INTERVAL: Duration = Duration::from_millis(10);
const DEFAULT_WAIT_MS: u64 = 2_000;

/// Query parameters that ask a read to wait for a write.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Sequence returned by the command API; the read waits until the projection has
    /// applied the aggregate up to it.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub wait_for_sequence: Option<String>,
    /// Maximum wait in milliseconds (default 2000, capped by the server's maximum).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub wait_ms: Option<String>,
}

impl WaitParams {
    /// Parses the parameters; returns the sequence and the timeout if a wait is
    /// requested. Every parameter given is validated, so a mistyped one never turns a
    /// requested wait into a silent no-op.
    pub fn parse(&self, max_wait_ms: u64) -> Result<Option<(i64, Duration)>, ApiError> {
        let mut errors = Vec::new();
        let sequence = self.wait_for_sequence.as_deref().and_then(|raw| {
            let parsed = raw.parse::<i64>().ok().filter(|value| *value >= 1);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "wait_for_sequence",
                    format!(
                        "'{}' is not an integer from 1 to {}",
                        truncate(raw, 40),
                        i64::MAX
                    ),
                ));
            }
            parsed
        });
        let wait_ms = self.wait_ms.as_deref().and_then(|raw| {
            let parsed = raw
                .parse::<u64>()
                .ok()
                .filter(|value| *value <= max_wait_ms);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "wait_ms",
                    format!(
                        "'{}' is not an integer from 0 to {max_wait_ms}",
                        truncate(raw, 40)
                    ),
                ));
            }
            parsed
        });
        if self.wait_ms.is_some() && self.wait_for_sequence.is_none() {
            errors.push(FieldError::new(
                "wait_ms",
                "is only valid together with wait_for_sequence",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let timeout = Duration::from_millis(wait_ms.unwrap_or(DEFAULT_WAIT_MS.min(max_wait_ms)));
        Ok(sequence.map(|sequence| (sequence, timeout)))
    }
}

/// Waits until `projection` has applied `aggregate_id` up to `sequence`. Returns 503
/// with a retry hint if that takes longer than `timeout`.
pub async fn wait_for(
    pool: &Pool,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    timeout: Duration,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let client = pool.get().await.map_err(ApiError::internal)?;
    let statement = client
        .prepare_cached(
            "SELECT last_sequence FROM projection_offsets
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .await
        .map_err(ApiError::internal)?;
    loop {
        let row = client
            .query_opt(&statement, &[&projection, &aggregate_type, &aggregate_id])
            .await
            .map_err(ApiError::internal)?;
        let reached = row.map_or(0, |row| row.get::<_, i64>(0));
        if reached >= sequence {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(ApiError::Unavailable(format!(
                "projection '{projection}' has reached sequence {reached} of {aggregate_id}, not {sequence}, \
                 after {} ms; retry the request",
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
