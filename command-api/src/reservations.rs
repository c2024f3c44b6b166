//! Calendar reservations: the write-side record of which intervals each doctor and each
//! patient has booked. Rows change in the same transaction as the appointment events
//! (see [`ReservationEffects`]), and the table's exclusion constraints reject
//! overlapping intervals, so conflicts are caught even when two bookings race.
//!
//! A booking is checked against the doctor's profile (availability, time off, status)
//! before it is written. To keep that check valid until the commit, the statement that
//! appends the booking locks the doctor's row in `doctor_calendar_versions` in shared
//! mode and appends only while it still holds the profile sequence that was checked.
//! Every profile event updates that row in its own transaction, so adding time off
//! waits for the bookings holding the row and then reads the reservations it
//! overlaps: each booking either reads the time off and is rejected, or is committed
//! first and reported as affected (schema migration 0014).

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
use sqlx::PgPool;
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
    /// Returns the condition that locks the doctor's calendar version row in shared mode
    /// and is true while the row has the sequence the slot was checked against.
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
             WHERE doctor_id = {} AND profile_sequence = {}{also} FOR SHARE",
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

/// An existing reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub appointment_id: Uuid,
    pub range: TimeRange,
}

/// Reads reservations, which are up to date with every committed booking.
#[derive(Clone)]
pub struct Reservations {
    pool: PgPool,
}

impl Reservations {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Returns, in one query, the doctor's reservations that overlap `doctor_window`,
    /// the patient's that overlap `patient_window`, each oldest first, and the sequence
    /// of the doctor profile's last event.
    pub async fn around_booking(
        &self,
        doctor: AccountId,
        doctor_window: &TimeRange,
        patient: AccountId,
        patient_window: &TimeRange,
    ) -> Result<AroundBooking, sqlx::Error> {
        type Row = (
            i64,
            Option<Uuid>,
            Option<PgRange<DateTime<Utc>>>,
            Option<bool>,
            Option<bool>,
        );
        // The profile row always exists, so the sequence comes back with no reservation.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT profile.sequence, held.appointment_id, held.during, held.of_doctor, held.of_patient \
             FROM (SELECT coalesce((SELECT profile_sequence FROM doctor_calendar_versions \
                                    WHERE doctor_id = $1), 0) AS sequence) AS profile \
             LEFT JOIN LATERAL ( \
                 SELECT appointment_id, during, \
                        doctor_id = $1 AND during && $2 AS of_doctor, \
                        patient_id = $3 AND during && $4 AS of_patient \
                 FROM appointment_reservations \
                 WHERE (doctor_id = $1 AND during && $2) OR (patient_id = $3 AND during && $4) \
             ) AS held ON true \
             ORDER BY lower(held.during), held.appointment_id",
        )
        .bind(doctor.0)
        .bind(pg_range(doctor_window))
        .bind(patient.0)
        .bind(pg_range(patient_window))
        .fetch_all(&self.pool)
        .await?;
        let mut around = AroundBooking::default();
        for (sequence, appointment_id, during, of_doctor, of_patient) in rows {
            around.profile_sequence = sequence as usize;
            let (Some(appointment_id), Some(during)) = (appointment_id, during) else {
                continue;
            };
            let range = to_time_range(&during).ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "reservation {appointment_id} has an unbounded interval"
                ))
            })?;
            let reservation = Reservation {
                appointment_id,
                range,
            };
            if of_patient == Some(true) {
                around.patient.push(reservation.clone());
            }
            if of_doctor == Some(true) {
                around.doctor.push(reservation);
            }
        }
        Ok(around)
    }
}

/// Reservations of a doctor and of a patient around a slot, and the doctor profile's
/// version when they were read.
#[derive(Debug, Default)]
pub struct AroundBooking {
    pub doctor: Vec<Reservation>,
    pub patient: Vec<Reservation>,
    /// Sequence of the doctor profile's last event (0 without a profile).
    pub profile_sequence: usize,
}

fn to_time_range(range: &PgRange<DateTime<Utc>>) -> Option<TimeRange> {
    use std::ops::Bound;
    let start = match range.start {
        Bound::Included(start) | Bound::Excluded(start) => start,
        Bound::Unbounded => return None,
    };
    let end = match range.end {
        Bound::Included(end) | Bound::Excluded(end) => end,
        Bound::Unbounded => return None,
    };
    TimeRange::new("during", start, end).ok()
}
