//! Calendar reservations: the write-side record of which intervals each doctor and each
//! patient has booked. Rows change in the same transaction as the appointment events
//! (see [`ReservationEffects`]), and the table's exclusion constraints reject
//! overlapping intervals, so conflicts are caught even when two bookings race.
//!
//! A booking is checked against the doctor's profile (availability, time off, status)
//! before it is written. To keep that check valid until the commit, the statement that
//! appends the booking locks the doctor's row in `doctor_calendar_versions` and appends
//! only while it still holds the profile sequence that was checked. The lock is
//! exclusive, so the bookings of one doctor commit one after the other. A booking that
//! waited meets the earlier one's reservation as committed (409 `slot-taken`), so
//! racing bookings of one slot do not wait on each other's uncommitted index entries
//! and cannot deadlock. Bookings of one patient with two doctors can still wait on
//! each other through the patient constraint; a deadlock there is retried once.
//! Every profile event updates that row in its own transaction, so adding time off
//! waits for the bookings holding the row and then reads the reservations it
//! overlaps: each booking either reads the time off and is rejected, or is committed
//! first and reported as affected (schema migration 0014). The check may use the
//! profile this process remembers (`crate::profiles`); the sequence in the statement is
//! what makes a remembered profile safe to use.

use chrono::{DateTime, Utc};
use medflow_domain::appointment::{Appointment, AppointmentEvent};
use medflow_domain::availability::TimeRange;
use medflow_domain::values::AccountId;
use std::sync::Mutex;

use medflow_domain::doctor::{DoctorEvent, DoctorProfile};
use medflow_infra::event_store::{EffectError, Effects, EventStatement};
use sqlx::postgres::types::PgRange;
use sqlx::postgres::PgArguments;
use sqlx::Arguments;
use uuid::Uuid;

/// Name of the constraint that rejects overlapping intervals of one doctor.
pub const DOCTOR_OVERLAP: &str = "appointment_reservations_doctor_overlap";
/// Name of the constraint that rejects overlapping intervals of one patient.
pub const PATIENT_OVERLAP: &str = "appointment_reservations_patient_overlap";

/// The doctor profile state a booking was checked against.
#[derive(Debug, Clone, Copy)]
pub struct CheckedProfile {
    pub doctor: AccountId,
    /// Sequence of the profile's last event when the slot was checked.
    pub sequence: usize,
}

/// Keeps `appointment_reservations` in step with appointment events.
#[derive(Debug, Default)]
pub struct ReservationEffects {
    /// Set for bookings and reschedules, whose slot check must still hold at commit.
    pub checked: Option<CheckedProfile>,
}

impl Effects<Appointment> for ReservationEffects {
    fn statement(
        &self,
        aggregate_id: &str,
        event: &AppointmentEvent,
        arguments: &mut PgArguments,
    ) -> Result<EventStatement, EffectError> {
        let appointment_id = Uuid::parse_str(aggregate_id)
            .map_err(|error| sqlx::Error::Protocol(format!("appointment id: {error}")))?;
        let mut next = Parameters { arguments };
        let statement = match event {
            AppointmentEvent::AppointmentBooked {
                patient,
                doctor,
                slot,
                ..
            } => {
                let condition = self.profile_unchanged(&mut next, "")?;
                let write = format!(
                    "INSERT INTO appointment_reservations (appointment_id, doctor_id, patient_id, during) \
                     SELECT {}, {}, {}, {} FROM appended",
                    next.bind(appointment_id)?,
                    next.bind(doctor.0)?,
                    next.bind(patient.0)?,
                    next.bind(pg_range(slot))?,
                );
                guarded(condition, write)
            }
            AppointmentEvent::AppointmentRescheduled { to, .. } => {
                // A booked appointment always has its reservation; without it there
                // would be nothing to move.
                let appointment = next.bind(appointment_id)?;
                let reserved = format!(
                    " AND EXISTS (SELECT FROM appointment_reservations WHERE appointment_id = {appointment})"
                );
                let condition = self.profile_unchanged(&mut next, &reserved)?;
                let write = format!(
                    "UPDATE appointment_reservations SET during = {} \
                     WHERE appointment_id = {appointment} AND EXISTS (SELECT FROM appended)",
                    next.bind(pg_range(to))?,
                );
                guarded(condition, write)
            }
            AppointmentEvent::AppointmentCancelled { .. } => EventStatement {
                write: Some(format!(
                    "DELETE FROM appointment_reservations \
                     WHERE appointment_id = {} AND EXISTS (SELECT FROM appended)",
                    next.bind(appointment_id)?
                )),
                ..EventStatement::default()
            },
            // Completed appointments and no-shows keep their interval: the time was
            // used, and it lies in the past anyway.
            AppointmentEvent::AppointmentStarted { .. }
            | AppointmentEvent::AppointmentCompleted { .. }
            | AppointmentEvent::AppointmentMarkedNoShow { .. }
            | AppointmentEvent::VideoActivityRecorded { .. } => EventStatement::default(),
        };
        Ok(statement)
    }
}

impl ReservationEffects {
    /// Returns the condition that locks the doctor's calendar version row and is true
    /// while the row has the sequence the slot was checked against.
    /// `also` adds conditions to the row's `WHERE` clause.
    fn profile_unchanged(
        &self,
        next: &mut Parameters<'_>,
        also: &str,
    ) -> Result<String, EffectError> {
        let checked = self.checked.ok_or_else(|| {
            EffectError::Database(sqlx::Error::Protocol(
                "a booking or reschedule needs the doctor profile it was checked against"
                    .to_owned(),
            ))
        })?;
        Ok(format!(
            "SELECT FROM doctor_calendar_versions \
             WHERE doctor_id = {} AND profile_sequence = {}{also} FOR NO KEY UPDATE",
            next.bind(checked.doctor.0)?,
            next.bind(checked.sequence as i64)?,
        ))
    }
}

fn guarded(condition: String, write: String) -> EventStatement {
    EventStatement {
        condition: Some(condition),
        write: Some(write),
        rejection:
            "the doctor's schedule changed while the slot was being booked; retry the request"
                .to_owned(),
    }
}

/// Adds parameters after those already bound and names their placeholders.
struct Parameters<'a> {
    arguments: &'a mut PgArguments,
}

impl Parameters<'_> {
    fn bind<T>(&mut self, value: T) -> Result<String, EffectError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'static,
    {
        self.arguments
            .add(value)
            .map_err(|error| EffectError::Database(sqlx::Error::Encode(error)))?;
        Ok(format!("${}", self.arguments.len()))
    }
}

/// Collects, when time off is added, the ids of the booked appointments it overlaps.
/// Appending the profile event updates the doctor's calendar version row, which waits
/// for bookings in flight, so the read that follows includes all of them.
#[derive(Debug)]
pub struct TimeOffEffects {
    pub doctor: AccountId,
    pub range: TimeRange,
    pub affected: Mutex<Vec<Uuid>>,
}

impl Effects<DoctorProfile> for TimeOffEffects {
    fn has_follow_up(&self) -> bool {
        true
    }

    async fn follow_up(
        &self,
        _aggregate_id: &str,
        _events: &[DoctorEvent],
        connection: &mut sqlx::PgConnection,
    ) -> Result<(), EffectError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT appointment_id FROM appointment_reservations \
             WHERE doctor_id = $1 AND during && $2 ORDER BY lower(during), appointment_id",
        )
        .bind(self.doctor.0)
        .bind(pg_range(&self.range))
        .fetch_all(connection)
        .await?;
        *self.affected.lock().expect("affected list lock") = ids;
        Ok(())
    }
}

fn pg_range(range: &TimeRange) -> PgRange<DateTime<Utc>> {
    PgRange::from(range.start()..range.end())
}
