//! `appointments`: one row per appointment, for a patient's list, a doctor's day
//! schedule, the booked intervals that slot listing subtracts, and the admin overview.
//! The cancellation reason is copied sealed; the query API opens it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medflow_domain::appointment::{Appointment, AppointmentEvent, VideoActivity};
use medflow_infra::events::StoredEvent;
use tokio_postgres::types::ToSql;

use uuid::Uuid;

use crate::framework::ReadModelTransaction;
use crate::Projection;

pub struct AppointmentsProjection;

#[async_trait]
impl Projection for AppointmentsProjection {
    fn name(&self) -> &'static str {
        "appointments"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[<Appointment as cqrs_es::Aggregate>::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["appointments"]
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
        let at = event.recorded_at;
        let payload: AppointmentEvent = serde_json::from_value(event.payload.clone())?;
        if let AppointmentEvent::AppointmentBooked {
            patient,
            doctor,
            slot,
            doctor_time_zone,
            ..
        } = &payload
        {
            transaction
                .execute(
                    "INSERT INTO appointments
                       (appointment_id, patient_id, doctor_id, starts_at, ends_at, doctor_time_zone,
                        status, booked_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'booked', $7, $7)",
                    &[
                        &appointment_id,
                        &patient.0,
                        &doctor.0,
                        &slot.start(),
                        &slot.end(),
                        doctor_time_zone,
                        &at,
                    ],
                )
                .await?;
            return Ok(());
        }

        let (statement, extra) = update_for(&payload)?;
        let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&appointment_id, &at];
        parameters.extend(
            extra
                .iter()
                .map(|value| value.as_ref() as &(dyn ToSql + Sync)),
        );
        let changed = transaction.execute(statement, &parameters).await?;
        anyhow::ensure!(
            changed == 1,
            "appointment {appointment_id} is not in the read model"
        );
        Ok(())
    }
}

type Parameters = Vec<Box<dyn ToSql + Sync + Send>>;

/// Returns the UPDATE for an event after booking. `$1` is the appointment id, `$2` the
/// time the event was recorded, and the returned values follow from `$3`.
fn update_for(payload: &AppointmentEvent) -> anyhow::Result<(&'static str, Parameters)> {
    Ok(match payload {
        AppointmentEvent::AppointmentBooked { .. } => {
            anyhow::bail!("a booking inserts the row and is handled by the caller")
        }
        AppointmentEvent::AppointmentRescheduled { to, .. } => (
            "UPDATE appointments SET starts_at = $3, ends_at = $4,
               reschedule_count = reschedule_count + 1, updated_at = $2
             WHERE appointment_id = $1",
            vec![Box::new(to.start()), Box::new(to.end())],
        ),
        AppointmentEvent::AppointmentCancelled {
            cancelled_by,
            reason,
            ..
        } => (
            "UPDATE appointments SET status = 'cancelled', cancelled_by = $3, cancel_reason = $4,
               finished_at = $2, updated_at = $2
             WHERE appointment_id = $1",
            vec![
                Box::new(cancelled_by.as_str()),
                Box::new(serde_json::to_value(reason)?),
            ],
        ),
        AppointmentEvent::AppointmentStarted { at, .. } => (
            "UPDATE appointments SET status = 'in_progress', started_at = $3, updated_at = $2
             WHERE appointment_id = $1",
            vec![Box::new(*at)],
        ),
        AppointmentEvent::AppointmentCompleted { at, .. } => (
            "UPDATE appointments SET status = 'completed', finished_at = $3, updated_at = $2
             WHERE appointment_id = $1",
            vec![Box::new(*at)],
        ),
        AppointmentEvent::AppointmentMarkedNoShow { at, .. } => (
            "UPDATE appointments SET status = 'no_show', finished_at = $3, updated_at = $2
             WHERE appointment_id = $1",
            vec![Box::new(*at)],
        ),
        AppointmentEvent::VideoActivityRecorded { activity, at, .. } => {
            video_update(*activity, *at)
        }
    })
}

fn video_update(activity: VideoActivity, at: DateTime<Utc>) -> (&'static str, Parameters) {
    let statement = match activity {
        VideoActivity::RoomStarted => {
            "UPDATE appointments SET video_started_at = COALESCE(video_started_at, $3), updated_at = $2
             WHERE appointment_id = $1"
        }
        VideoActivity::RoomFinished => {
            "UPDATE appointments SET video_ended_at = $3, updated_at = $2 WHERE appointment_id = $1"
        }
        // Joins and leaves stay in the event stream; the read model has no use for them.
        VideoActivity::ParticipantJoined { .. } | VideoActivity::ParticipantLeft { .. } => {
            "UPDATE appointments SET updated_at = $2 WHERE appointment_id = $1 AND $3::timestamptz IS NOT NULL"
        }
    };
    (statement, vec![Box::new(at)])
}
