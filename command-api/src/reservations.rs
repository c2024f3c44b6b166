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
    /// Takes the doctor's calendar lock in shared mode together with `BEGIN`, for a
    /// booking or reschedule.
    fn opening(&self) -> Option<String> {
        self.checked
            .map(|checked| lock_statement(checked.doctor, LockMode::Shared))
    }

    async fn apply(
        &self,
        aggregate_id: &str,
        events: &[AppointmentEvent],
        connection: &mut sqlx::PgConnection,
    ) -> Result<(), EffectError> {
        let appointment_id = Uuid::parse_str(aggregate_id)
            .map_err(|error| sqlx::Error::Protocol(format!("appointment id: {error}")))?;
        for event in events {
            match event {
                AppointmentEvent::AppointmentBooked {
                    patient,
                    doctor,
                    slot,
                    ..
                } => {
                    let checked = self.checked_profile()?;
                    let written = sqlx::query(&format!(
                        "INSERT INTO appointment_reservations (appointment_id, doctor_id, patient_id, during) \
                         SELECT $1, $2, $3, $4 WHERE {}",
                        profile_unchanged(5)
                    ))
                    .bind(appointment_id)
                    .bind(doctor.0)
                    .bind(patient.0)
                    .bind(pg_range(slot))
                    .bind(DoctorProfile::TYPE)
                    .bind(checked.doctor.to_string())
                    .bind(checked.sequence as i64)
                    .execute(&mut *connection)
                    .await?;
                    ensure_profile_unchanged(written.rows_affected())?;
                }
                AppointmentEvent::AppointmentRescheduled { to, .. } => {
                    let checked = self.checked_profile()?;
                    let written = sqlx::query(&format!(
                        "UPDATE appointment_reservations SET during = $2 \
                         WHERE appointment_id = $1 AND {}",
                        profile_unchanged(3)
                    ))
                    .bind(appointment_id)
                    .bind(pg_range(to))
                    .bind(DoctorProfile::TYPE)
                    .bind(checked.doctor.to_string())
                    .bind(checked.sequence as i64)
                    .execute(&mut *connection)
                    .await?;
                    ensure_profile_unchanged(written.rows_affected())?;
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

/// SQL condition: the doctor profile's last event still has the checked sequence. The
/// parameters from `$first` on are the profile's aggregate type, its id and the sequence.
fn profile_unchanged(first: usize) -> String {
    format!(
        "(SELECT coalesce(max(sequence), 0) FROM events \
          WHERE aggregate_type = ${first} AND aggregate_id = ${}) = ${}",
        first + 1,
        first + 2
    )
}

impl ReservationEffects {
    fn checked_profile(&self) -> Result<CheckedProfile, EffectError> {
        self.checked.ok_or_else(|| {
            EffectError::Database(sqlx::Error::Protocol(
                "a booking or reschedule needs the doctor profile it was checked against"
                    .to_owned(),
            ))
        })
    }
}

/// Rejects the change when the reservation written under the profile guard changed no
/// row, which means the doctor's schedule changed after the slot was checked.
fn ensure_profile_unchanged(rows: u64) -> Result<(), EffectError> {
    if rows == 1 {
        return Ok(());
    }
    Err(EffectError::Rejected(
        "the doctor's schedule changed while the slot was being booked; retry the request"
            .to_owned(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl LockMode {
    fn function(self) -> &'static str {
        match self {
            LockMode::Shared => "pg_advisory_xact_lock_shared",
            LockMode::Exclusive => "pg_advisory_xact_lock",
        }
    }
}

/// Key of the doctor's calendar lock: the id's first 64 bits, mixed with a constant so
/// that it does not line up with advisory locks keyed by other ids.
fn calendar_lock_key(doctor: AccountId) -> i64 {
    const CALENDAR: u64 = 0x6361_6c65_6e64_6172; // "calendar"
    let (high, _) = doctor.0.as_u64_pair();
    (high ^ CALENDAR) as i64
}

/// Returns the statement that takes the doctor's calendar lock until the end of the
/// transaction. The key is a number, so the text contains no caller input.
fn lock_statement(doctor: AccountId, mode: LockMode) -> String {
    format!("SELECT {}({})", mode.function(), calendar_lock_key(doctor))
}

/// Takes the doctor's calendar lock until the end of the transaction.
pub async fn lock_calendar(
    connection: &mut sqlx::PgConnection,
    doctor: AccountId,
    mode: LockMode,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SELECT {}($1)", mode.function()))
        .bind(calendar_lock_key(doctor))
        .execute(connection)
        .await?;
    Ok(())
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
             FROM (SELECT coalesce(max(sequence), 0) AS sequence FROM events \
                   WHERE aggregate_type = $5 AND aggregate_id = $6) AS profile \
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
        .bind(DoctorProfile::TYPE)
        .bind(doctor.to_string())
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
