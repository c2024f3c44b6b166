//! The scheduler: workers that claim due reminders and send them.
//!
//! A worker claims one due row with `FOR UPDATE SKIP LOCKED`, so any number of workers
//! and service instances share the schedule without sending a row twice at once. It
//! hands the e-mail to SMTP and marks the row sent in the same transaction that holds
//! the claim. A crash after the commit sends nothing again. A crash between the SMTP
//! hand-off and the commit leaves the row pending, so it is sent once more, with the same
//! Message-ID: SMTP has no way to make a delivery and a database commit one atomic step.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Pool;
use medflow_domain::values::SealedValue;
use medflow_infra::clock::SharedClock;
use medflow_infra::crypto::keys::KeyRing;
use medflow_infra::crypto::CryptoError;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::mail::{Mailer, ReminderMail};
use crate::metrics::ReminderMetrics;
use crate::schedule::notification_id;

/// Delay before the first retry of a failed send; it doubles per attempt.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Maximum delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);

pub struct Sender {
    pub pool: Pool,
    pub clock: SharedClock,
    pub mailer: Mailer,
    pub keys: KeyRing,
    pub metrics: ReminderMetrics,
    /// Pause of an idle worker before it looks for due reminders again.
    pub poll_interval: Duration,
    /// Crash injected for tests of the window between the SMTP hand-off and the commit.
    pub abort_after_smtp: bool,
}

/// What a worker did with one claimed reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retrying,
    GivenUp,
    Idle,
}

struct Claimed {
    appointment_id: Uuid,
    offset_minutes: i32,
    patient_id: Uuid,
    start: DateTime<Utc>,
    doctor_time_zone: String,
    due_at: DateTime<Utc>,
    attempts: i32,
    message_id: String,
    schedule_sequence: i64,
}

impl Sender {
    /// Runs a worker until `shutdown` is cancelled.
    pub async fn run_worker(self: Arc<Self>, worker: usize, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let pause = match self.send_next().await {
                Ok(Outcome::Idle) => self.poll_interval,
                Ok(_) => continue,
                Err(error) => {
                    tracing::error!(worker, error = %format!("{error:#}"), "reminder worker failed; retrying");
                    self.poll_interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims the most overdue reminder and sends it, retries it later or gives it up.
    pub async fn send_next(&self) -> anyhow::Result<Outcome> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let now = self.clock.now();
        let row = transaction
            .query_opt(
                "SELECT appointment_id, offset_minutes, patient_id, appointment_start,
                        doctor_time_zone, due_at, attempts, message_id, schedule_sequence
                 FROM reminders
                 WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED",
                &[&now],
            )
            .await?;
        let Some(row) = row else {
            transaction.commit().await?;
            return Ok(Outcome::Idle);
        };
        let claimed = Claimed {
            appointment_id: row.get(0),
            offset_minutes: row.get(1),
            patient_id: row.get(2),
            start: row.get(3),
            doctor_time_zone: row.get(4),
            due_at: row.get(5),
            attempts: row.get(6),
            message_id: row.get(7),
            schedule_sequence: row.get(8),
        };

        if now >= claimed.start {
            give_up(
                &transaction,
                &claimed,
                "not sent before the appointment started",
                now,
            )
            .await?;
            transaction.commit().await?;
            self.metrics.failed.inc();
            tracing::warn!(
                appointment_id = %claimed.appointment_id,
                offset_minutes = claimed.offset_minutes,
                attempts = claimed.attempts,
                "reminder given up: the appointment has started"
            );
            return Ok(Outcome::GivenUp);
        }

        let Some(address) = self
            .patient_address(&transaction, claimed.patient_id)
            .await?
        else {
            give_up(
                &transaction,
                &claimed,
                "the patient has no readable e-mail address",
                now,
            )
            .await?;
            transaction.commit().await?;
            self.metrics.failed.inc();
            tracing::warn!(
                appointment_id = %claimed.appointment_id,
                patient_id = %claimed.patient_id,
                "reminder given up: no e-mail address for the patient"
            );
            return Ok(Outcome::GivenUp);
        };

        let mail = ReminderMail {
            to: &address,
            message_id: &claimed.message_id,
            appointment_id: claimed.appointment_id,
            offset_minutes: claimed.offset_minutes,
            start: claimed.start,
            doctor_time_zone: &claimed.doctor_time_zone,
        };
        match self.mailer.send(&mail).await {
            Ok(()) if self.abort_after_smtp => {
                tracing::error!(
                    appointment_id = %claimed.appointment_id,
                    "aborting after the SMTP hand-off, as MEDFLOW_REMINDER_ABORT_AFTER_SMTP requests"
                );
                std::process::abort();
            }
            Ok(()) => {
                let sent_at = self.clock.now();
                mark_sent(&transaction, &claimed, sent_at).await?;
                transaction.commit().await?;
                self.metrics.sent.inc();
                let delay = (sent_at - claimed.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                self.metrics.send_delay.observe(delay);
                tracing::info!(
                    appointment_id = %claimed.appointment_id,
                    offset_minutes = claimed.offset_minutes,
                    delay_seconds = delay,
                    "reminder sent"
                );
                Ok(Outcome::Sent)
            }
            Err(error) => {
                let retry_at = now + retry_delay(claimed.attempts);
                transaction
                    .execute(
                        "UPDATE reminders SET attempts = attempts + 1, next_attempt_at = $4,
                           last_error = $5, updated_at = $6
                         WHERE appointment_id = $1 AND schedule_sequence = $2 AND offset_minutes = $3",
                        &[
                            &claimed.appointment_id,
                            &claimed.schedule_sequence,
                            &claimed.offset_minutes,
                            &retry_at,
                            &"SMTP send failed",
                            &now,
                        ],
                    )
                    .await?;
                transaction.commit().await?;
                self.metrics.send_errors.inc();
                tracing::warn!(
                    appointment_id = %claimed.appointment_id,
                    offset_minutes = claimed.offset_minutes,
                    attempt = claimed.attempts + 1,
                    %retry_at,
                    error = %error,
                    "sending a reminder failed; retrying later"
                );
                Ok(Outcome::Retrying)
            }
        }
    }

    /// Opens the patient's e-mail address from the accounts read model. Returns `None`
    /// when there is no account or its data key was destroyed.
    async fn patient_address(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        patient: Uuid,
    ) -> anyhow::Result<Option<String>> {
        let row = transaction
            .query_opt(
                "SELECT email FROM account_directory WHERE account_id = $1",
                &[&patient],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: SealedValue = serde_json::from_value(row.get(0))?;
        match self.keys.open_text(patient, "email", &sealed).await {
            Ok(address) => Ok(Some(address)),
            Err(CryptoError::DestroyedDataKey(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Updates the pending gauge from the table.
    pub async fn refresh_pending(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM reminders WHERE status = 'pending'",
                &[],
            )
            .await?;
        self.metrics.pending.set(row.get(0));
        Ok(())
    }
}

/// Exponential backoff: 2 s, 4 s, 8 s … capped at 60 s.
fn retry_delay(attempts: i32) -> TimeDelta {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
    let delay = FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY);
    TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(60))
}

async fn mark_sent(
    transaction: &tokio_postgres::Transaction<'_>,
    claimed: &Claimed,
    sent_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    transaction
        .execute(
            "UPDATE reminders SET status = 'sent', sent_at = $4, attempts = attempts + 1,
               last_error = NULL, updated_at = $4
             WHERE appointment_id = $1 AND schedule_sequence = $2 AND offset_minutes = $3",
            &[
                &claimed.appointment_id,
                &claimed.schedule_sequence,
                &claimed.offset_minutes,
                &sent_at,
            ],
        )
        .await?;
    let id = notification_id(&["appointment_reminder", &claimed.message_id]);
    let payload = json!({
        "start": claimed.start,
        "doctor_time_zone": claimed.doctor_time_zone,
        "minutes_before": claimed.offset_minutes,
    });
    transaction
        .execute(
            "INSERT INTO notifications
               (notification_id, recipient_id, kind, appointment_id, payload, created_at)
             VALUES ($1, $2, 'appointment_reminder', $3, $4, $5)
             ON CONFLICT (notification_id) DO NOTHING",
            &[
                &id,
                &claimed.patient_id,
                &claimed.appointment_id,
                &payload,
                &sent_at,
            ],
        )
        .await?;
    Ok(())
}

async fn give_up(
    transaction: &tokio_postgres::Transaction<'_>,
    claimed: &Claimed,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    transaction
        .execute(
            "UPDATE reminders SET status = 'failed', last_error = $4, updated_at = $5
             WHERE appointment_id = $1 AND schedule_sequence = $2 AND offset_minutes = $3",
            &[
                &claimed.appointment_id,
                &claimed.schedule_sequence,
                &claimed.offset_minutes,
                &reason,
                &now,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        assert_eq!(retry_delay(0), TimeDelta::seconds(2));
        assert_eq!(retry_delay(1), TimeDelta::seconds(4));
        assert_eq!(retry_delay(4), TimeDelta::seconds(32));
        assert_eq!(retry_delay(5), TimeDelta::seconds(60));
        assert_eq!(retry_delay(100), TimeDelta::seconds(60));
    }
}
