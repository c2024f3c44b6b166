//! The reminder schedule: a projection of appointment events into `reminders` rows and
//! in-app notifications. It runs in the projector framework, so each event is applied
//! exactly once per appointment sequence, even when Kafka redelivers it.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use medflow_domain::appointment::{Appointment, AppointmentEvent};
use medflow_domain::availability::TimeRange;
use medflow_infra::clock::SharedClock;
use medflow_infra::events::StoredEvent;
use medflow_projectors::framework::ReadModelTransaction;
use medflow_projectors::Projection;
use serde_json::json;
use sha2::{Digest, Sha256};

use uuid::Uuid;

/// Minutes before the appointment start at which reminders fall due.
pub const OFFSETS_MINUTES: [i32; 3] = [24 * 60, 2 * 60, 15];

pub struct ReminderSchedule {
    pub clock: SharedClock,
}

#[async_trait]
impl Projection for ReminderSchedule {
    fn name(&self) -> &'static str {
        "reminders"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[<Appointment as cqrs_es::Aggregate>::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reminders"]
    }

    async fn apply(
        &self,
        transaction: &ReadModelTransaction<'_>,
        event: &StoredEvent,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            medflow_domain::upcasting::is_current(&event.event_type, &event.event_version),
            "unsupported {} version {}",
            event.event_type,
            event.event_version
        );
        let appointment_id = Uuid::parse_str(&event.aggregate_id)?;
        let payload: AppointmentEvent = serde_json::from_value(event.payload.clone())?;
        let now = self.clock.now();
        match payload {
            AppointmentEvent::AppointmentBooked {
                patient,
                doctor,
                slot,
                doctor_time_zone,
                ..
            } => {
                let booking = Booking {
                    appointment_id,
                    sequence: event.sequence,
                    patient: patient.0,
                    doctor: doctor.0,
                    slot,
                    doctor_time_zone,
                };
                schedule(transaction, &booking, now).await?;
                for recipient in [booking.patient, booking.doctor] {
                    notify(
                        transaction,
                        recipient,
                        "appointment_booked",
                        &booking,
                        event,
                        now,
                    )
                    .await?;
                }
            }
            AppointmentEvent::AppointmentRescheduled { to, .. } => {
                let Some(mut booking) = current_booking(transaction, appointment_id).await? else {
                    anyhow::bail!("appointment {appointment_id} has no reminders to reschedule");
                };
                close_pending(transaction, appointment_id, "replaced", now).await?;
                booking.sequence = event.sequence;
                booking.slot = to;
                schedule(transaction, &booking, now).await?;
                for recipient in [booking.patient, booking.doctor] {
                    notify(
                        transaction,
                        recipient,
                        "appointment_rescheduled",
                        &booking,
                        event,
                        now,
                    )
                    .await?;
                }
            }
            AppointmentEvent::AppointmentCancelled { .. } => {
                close_pending(transaction, appointment_id, "cancelled", now).await?;
                if let Some(booking) = current_booking(transaction, appointment_id).await? {
                    // Both parties hear of it: the one who cancelled may be signed in on
                    // other devices whose views must update too.
                    for recipient in [booking.patient, booking.doctor] {
                        notify(
                            transaction,
                            recipient,
                            "appointment_cancelled",
                            &booking,
                            event,
                            now,
                        )
                        .await?;
                    }
                }
            }
            AppointmentEvent::AppointmentStarted { .. }
            | AppointmentEvent::AppointmentCompleted { .. }
            | AppointmentEvent::AppointmentMarkedNoShow { .. } => {
                close_pending(transaction, appointment_id, "cancelled", now).await?;
            }
            AppointmentEvent::VideoActivityRecorded { .. } => {}
        }
        Ok(())
    }
}

/// The appointment time that reminders are scheduled for.
struct Booking {
    appointment_id: Uuid,
    /// Sequence of the event that set this time.
    sequence: i64,
    patient: Uuid,
    doctor: Uuid,
    slot: TimeRange,
    doctor_time_zone: String,
}

/// Deterministic Message-ID of a reminder e-mail. A resend after a crash between the
/// SMTP hand-off and the database commit repeats it, so mail clients can drop the copy.
pub fn message_id(appointment_id: Uuid, sequence: i64, offset_minutes: i32) -> String {
    format!("<reminder.{appointment_id}.{sequence}.{offset_minutes}@medflow>")
}

/// Inserts the three reminders of a booked time. A reminder already due when the
/// booking is applied is stored as `skipped`: it is never sent late.
async fn schedule(
    transaction: &ReadModelTransaction<'_>,
    booking: &Booking,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for offset in OFFSETS_MINUTES {
        let due_at = booking.slot.start() - TimeDelta::minutes(i64::from(offset));
        let status = if due_at <= now { "skipped" } else { "pending" };
        transaction
            .execute(
                "INSERT INTO reminders
                   (appointment_id, schedule_sequence, offset_minutes, patient_id, doctor_id,
                    appointment_start, doctor_time_zone, due_at, status, next_attempt_at,
                    message_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10, $11, $11)
                 ON CONFLICT DO NOTHING",
                &[
                    &booking.appointment_id,
                    &booking.sequence,
                    &offset,
                    &booking.patient,
                    &booking.doctor,
                    &booking.slot.start(),
                    &booking.doctor_time_zone,
                    &due_at,
                    &status,
                    &message_id(booking.appointment_id, booking.sequence, offset),
                    &now,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Marks every pending reminder of the appointment with `status`.
async fn close_pending(
    transaction: &ReadModelTransaction<'_>,
    appointment_id: Uuid,
    status: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    transaction
        .execute(
            "UPDATE reminders SET status = $2, updated_at = $3
             WHERE appointment_id = $1 AND status = 'pending'",
            &[&appointment_id, &status, &now],
        )
        .await?;
    Ok(())
}

/// Returns the latest scheduled time of the appointment.
async fn current_booking(
    transaction: &ReadModelTransaction<'_>,
    appointment_id: Uuid,
) -> anyhow::Result<Option<Booking>> {
    let row = transaction
        .query_opt(
            "SELECT schedule_sequence, patient_id, doctor_id, appointment_start, doctor_time_zone
             FROM reminders WHERE appointment_id = $1
             ORDER BY schedule_sequence DESC LIMIT 1",
            &[&appointment_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let start: DateTime<Utc> = row.get(3);
    Ok(Some(Booking {
        appointment_id,
        sequence: row.get(0),
        patient: row.get(1),
        doctor: row.get(2),
        slot: TimeRange::new(
            "slot",
            start,
            start + medflow_domain::availability::slot_length(),
        )?,
        doctor_time_zone: row.get(4),
    }))
}

/// Id of a notification, derived from what it is about, so applying the same event
/// twice cannot notify twice.
pub fn notification_id(parts: &[&str]) -> Uuid {
    let digest = Sha256::digest(parts.join("|").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Adds an in-app notification about the appointment for `recipient`.
async fn notify(
    transaction: &ReadModelTransaction<'_>,
    recipient: Uuid,
    kind: &str,
    booking: &Booking,
    event: &StoredEvent,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let id = notification_id(&[
        kind,
        &booking.appointment_id.to_string(),
        &event.sequence.to_string(),
        &recipient.to_string(),
    ]);
    let payload = json!({
        "start": booking.slot.start(),
        "end": booking.slot.end(),
        "doctor_time_zone": booking.doctor_time_zone,
    });
    transaction
        .execute(
            "INSERT INTO notifications
               (notification_id, recipient_id, kind, appointment_id, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (notification_id) DO NOTHING",
            &[
                &id,
                &recipient,
                &kind,
                &booking.appointment_id,
                &payload,
                &now,
            ],
        )
        .await?;
    Ok(())
}
