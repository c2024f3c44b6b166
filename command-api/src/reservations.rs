//! Calendar reservations: the write-side record of which intervals each doctor and each
//! patient has booked. Rows change in the same transaction as the appointment events
//! (see [`ReservationEffects`]), and the table's exclusion constraints reject
//! overlapping intervals, so conflicts are caught even when two bookings race.
//!
//! A booking is checked against the doctor's profile (availability, time off, status)
//! before its transaction starts. To keep that check valid until the commit, the
//! booking transaction takes the doctor's calendar lock in shared mode and verifies
//! that the profile's last sequence is still the one it checked. Adding time off takes
//! the same lock exclusively and reads the overlapping reservations inside its own
//! transaction, so each booking either reads the time off and is rejected, or is
//! committed first and reported as affected.

use chrono::{DateTime, Utc};
use medflow_domain::appointment::{Appointment, AppointmentEvent};
use medflow_domain::availability::TimeRange;
use medflow_domain::values::AccountId;
use std::sync::Mutex;

use cqrs_es::Aggregate;
use medflow_domain::doctor::{DoctorEvent, DoctorProfile};
use medflow_infra::event_store::{EffectError, Effects};
use sqlx::postgres::types::PgRange;
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
    async fn apply(
        &self,
        aggregate_id: &str,
        events: &[AppointmentEvent],
        connection: &mut sqlx::PgConnection,
    ) -> Result<(), EffectError> {
        let appointment_id = Uuid::parse_str(aggregate_id)
            .map_err(|error| sqlx::Error::Protocol(format!("appointment id: {error}")))?;
        if let Some(checked) = self.checked {
            lock_calendar(connection, checked.doctor, LockMode::Shared).await?;
            let current = profile_sequence(connection, checked.doctor).await?;
            if current != checked.sequence {
                return Err(EffectError::Rejected(
                    "the doctor's schedule changed while the slot was being booked; retry the request"
                        .to_owned(),
                ));
            }
        }
        for event in events {
            match event {
                AppointmentEvent::AppointmentBooked {
                    patient,
                    doctor,
                    slot,
                    ..
                } => {
                    sqlx::query(
                        "INSERT INTO appointment_reservations (appointment_id, doctor_id, patient_id, during) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(appointment_id)
                    .bind(doctor.0)
                    .bind(patient.0)
                    .bind(pg_range(slot))
                    .execute(&mut *connection)
                    .await?;
                }
                AppointmentEvent::AppointmentRescheduled { to, .. } => {
                    sqlx::query(
                        "UPDATE appointment_reservations SET during = $2 WHERE appointment_id = $1",
                    )
                    .bind(appointment_id)
                    .bind(pg_range(to))
                    .execute(&mut *connection)
                    .await?;
                }
                AppointmentEvent::AppointmentCancelled { .. } => {
                    sqlx::query("DELETE FROM appointment_reservations WHERE appointment_id = $1")
                        .bind(appointment_id)
                        .execute(&mut *connection)
                        .await?;
                }
                // Completed appointments and no-shows keep their interval: the time
                // was used, and it lies in the past anyway.
                AppointmentEvent::AppointmentStarted { .. }
                | AppointmentEvent::AppointmentCompleted { .. }
                | AppointmentEvent::AppointmentMarkedNoShow { .. }
                | AppointmentEvent::VideoActivityRecorded { .. } => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Takes the doctor's calendar lock until the end of the transaction.
pub async fn lock_calendar(
    connection: &mut sqlx::PgConnection,
    doctor: AccountId,
    mode: LockMode,
) -> Result<(), sqlx::Error> {
    let function = match mode {
        LockMode::Shared => "pg_advisory_xact_lock_shared",
        LockMode::Exclusive => "pg_advisory_xact_lock",
    };
    sqlx::query(&format!(
        "SELECT {function}(hashtextextended('doctor-calendar:' || $1::text, 0))"
    ))
    .bind(doctor.0)
    .execute(connection)
    .await?;
    Ok(())
}

/// Returns the sequence of the doctor profile's last stored event.
async fn profile_sequence(
    connection: &mut sqlx::PgConnection,
    doctor: AccountId,
) -> Result<usize, sqlx::Error> {
    let sequence: Option<i64> = sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(DoctorProfile::TYPE)
    .bind(doctor.to_string())
    .fetch_one(connection)
    .await?;
    Ok(sequence.unwrap_or(0) as usize)
}

/// Adds time off under the doctor's exclusive calendar lock and collects the ids of the
/// booked appointments it overlaps.
#[derive(Debug)]
pub struct TimeOffEffects {
    pub doctor: AccountId,
    pub range: TimeRange,
    pub affected: Mutex<Vec<Uuid>>,
}

impl Effects<DoctorProfile> for TimeOffEffects {
    async fn apply(
        &self,
        _aggregate_id: &str,
        _events: &[DoctorEvent],
        connection: &mut sqlx::PgConnection,
    ) -> Result<(), EffectError> {
        lock_calendar(connection, self.doctor, LockMode::Exclusive).await?;
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

    /// Returns the doctor's reservations that overlap `window`, oldest first.
    pub async fn for_doctor(
        &self,
        doctor: AccountId,
        window: &TimeRange,
    ) -> Result<Vec<Reservation>, sqlx::Error> {
        self.overlapping("doctor_id", doctor, window).await
    }

    /// Returns the patient's reservations that overlap `window`, oldest first.
    pub async fn for_patient(
        &self,
        patient: AccountId,
        window: &TimeRange,
    ) -> Result<Vec<Reservation>, sqlx::Error> {
        self.overlapping("patient_id", patient, window).await
    }

    async fn overlapping(
        &self,
        column: &'static str,
        account: AccountId,
        window: &TimeRange,
    ) -> Result<Vec<Reservation>, sqlx::Error> {
        let rows: Vec<(Uuid, PgRange<DateTime<Utc>>)> = sqlx::query_as(&format!(
            "SELECT appointment_id, during FROM appointment_reservations \
             WHERE {column} = $1 AND during && $2 ORDER BY lower(during), appointment_id"
        ))
        .bind(account.0)
        .bind(pg_range(window))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(appointment_id, during)| {
                let range = to_time_range(&during).ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "reservation {appointment_id} has an unbounded interval"
                    ))
                })?;
                Ok(Reservation {
                    appointment_id,
                    range,
                })
            })
            .collect()
    }
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
