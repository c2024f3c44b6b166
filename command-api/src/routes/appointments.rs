//! Booking and rescheduling (`POST /appointments`,
//! `POST /appointments/{appointment_id}/reschedule`) and the parts every appointment
//! endpoint shares: loading an appointment for one of its parties and running commands
//! together with the calendar reservations.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use medflow_domain::appointment::{Appointment, AppointmentCommand, AppointmentError, Party};
use medflow_domain::availability::{slot_length, SlotRejection, TimeRange};
use medflow_domain::doctor::DoctorProfile;
use medflow_domain::values::{truncate, AccountId, Role};
use medflow_domain::FieldError;
use medflow_infra::event_store::{Committed, TransactionalError};
use medflow_infra::sessions::Session;
use medflow_infra::web::access;
use medflow_infra::web::auth::{confirm_session, AuthenticatedCommand};
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{metadata, record_aggregate};
use crate::error::{from_appointment_error, from_doctor_error};
use crate::reservations::{CheckedProfile, ReservationEffects};
use crate::state::AppState;
use crate::state::SharedState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    /// Account id of a verified doctor.
    pub doctor_id: String,
    /// Slot start as RFC 3339, as the slot list returned it. Any offset naming the same
    /// instant is accepted.
    pub start: String,
}

impl RequestBody for BookingRequest {
    const FIELDS: &'static [Field] = &[
        Field::required("doctor_id", JsonKind::String),
        Field::required("start", JsonKind::String),
    ];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// New slot start as RFC 3339, from the same doctor's slot list.
    pub start: String,
}

impl RequestBody for RescheduleRequest {
    const FIELDS: &'static [Field] = &[Field::required("start", JsonKind::String)];
}

/// Response to a booking or a reschedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentAccepted {
    pub appointment_id: Uuid,
    /// Same as `appointment_id`, for the read-your-writes parameters of the query API.
    pub aggregate_id: String,
    /// Sequence of the appointment's last event.
    pub sequence: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The doctor's IANA time zone, for showing the slot in the doctor's local time.
    pub doctor_time_zone: String,
}

#[utoipa::path(
    post,
    path = "/appointments",
    tag = "appointments",
    request_body = BookingRequest,
    security(("session" = [])),
    responses(
        (status = 201, description = "Appointment booked", body = AppointmentAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a patient", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`urn:medflow:problem:slot-taken`: another appointment holds the slot; `urn:medflow:problem:patient-overlap`: the patient already has an appointment at that time", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is malformed; `urn:medflow:problem:doctor-not-bookable`: no verified doctor with this id; `urn:medflow:problem:slot-unavailable`: the availability rule rejects the start (past, minimum notice, horizon, outside availability, time off)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn book(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    body: JsonBody<BookingRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Patient])?;
    let patient = auth.session.account_id;
    let mut errors = Vec::new();
    let doctor = AccountId::parse("doctor_id", &body.doctor_id)
        .map_err(|error| errors.push(error))
        .ok();
    let start = parse_start(&body.start)
        .map_err(|error| errors.push(error))
        .ok();
    let (Some(doctor), Some(start)) = (doctor, start) else {
        return Err(ApiError::Validation(errors));
    };

    let slot = slot_at(start)?;
    let appointment_id = Uuid::new_v4();
    let aggregate_id = appointment_id.to_string();
    record_aggregate(&request, &aggregate_id);
    let mut profile = ProfileSource::Remembered;
    let (committed, time_zone) = loop {
        let check = check_slot(&state, doctor, &slot, profile).await?;
        let command = AppointmentCommand::Book {
            patient,
            doctor,
            slot,
            doctor_time_zone: check.time_zone.clone(),
        };
        let effects = ReservationEffects {
            checked: Some(check.profile),
        };
        let outcome = state
            .appointments
            .create_with(
                &aggregate_id,
                command,
                metadata(Some(&auth.session)),
                &effects,
            )
            .await;
        if check.outdated(&outcome, appointment_id) {
            profile = ProfileSource::Loaded;
            continue;
        }
        break (outcome.map_err(from_appointment_error)?, check.time_zone);
    };
    confirm_session(&request);
    tracing::info!(
        %appointment_id,
        doctor_id = %doctor,
        sequence = committed.sequence,
        "appointment booked"
    );
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/appointments/{appointment_id}")))
        .json(accepted(appointment_id, committed, &slot, time_zone)))
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/reschedule",
    tag = "appointments",
    request_body = RescheduleRequest,
    params(("appointment_id" = Uuid, Path, description = "The appointment to move")),
    security(("session" = [])),
    responses(
        (status = 200, description = "Appointment moved; the old slot is free again", body = AppointmentAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new slot is taken, the patient is busy then, the appointment is not booked any more or has already started", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The start is malformed, equal to the current slot, or rejected by the availability rule", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reschedule(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    body: JsonBody<RescheduleRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Patient])?;
    let appointment_id = parse_appointment_id(&path)?;
    let start = parse_start(&body.start)?;
    let loaded = load_for_party(
        &state,
        appointment_id,
        &auth.session,
        &[Party::Patient],
        AppointmentSource::Remembered,
    )
    .await?;
    let Some(doctor) = loaded.appointment.doctor else {
        return Err(not_found(appointment_id));
    };

    let slot = slot_at(start)?;
    let mut profile = ProfileSource::Remembered;
    let (committed, time_zone) = loop {
        let check = check_slot(&state, doctor, &slot, profile).await?;
        let command = AppointmentCommand::Reschedule {
            to: slot,
            now: state.clock.now(),
        };
        let effects = ReservationEffects {
            checked: Some(check.profile),
        };
        let outcome = run_command(
            &state,
            &request,
            &auth.session,
            appointment_id,
            loaded.clone(),
            command,
            &effects,
        )
        .await;
        if check.outdated(&outcome, appointment_id) {
            profile = ProfileSource::Loaded;
            continue;
        }
        break (outcome.map_err(from_appointment_error)?, check.time_zone);
    };
    tracing::info!(%appointment_id, sequence = committed.sequence, "appointment rescheduled");
    Ok(HttpResponse::Ok().json(accepted(appointment_id, committed, &slot, time_zone)))
}

fn accepted(
    appointment_id: Uuid,
    committed: Committed,
    slot: &TimeRange,
    doctor_time_zone: String,
) -> AppointmentAccepted {
    AppointmentAccepted {
        appointment_id,
        aggregate_id: committed.aggregate_id,
        sequence: committed.sequence as u64,
        start: slot.start(),
        end: slot.end(),
        doctor_time_zone,
    }
}

/// Parses a slot start given as RFC 3339 with an offset.
fn parse_start(raw: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|start| start.with_timezone(&Utc))
        .map_err(|_| {
            FieldError::new(
                "start",
                format!(
                    "'{}' is not an RFC 3339 date-time such as 2026-12-07T09:00:00Z",
                    truncate(raw, 40)
                ),
            )
        })
}

fn slot_at(start: DateTime<Utc>) -> Result<TimeRange, ApiError> {
    let end = start
        .checked_add_signed(slot_length())
        .ok_or_else(|| FieldError::new("start", "is out of range"))?;
    Ok(TimeRange::new("slot", start, end)?)
}

/// Source of the doctor's profile for [`check_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProfileSource {
    /// The profile this process last saw, loaded only if it has none.
    Remembered,
    /// The profile as stored in the event store now.
    Loaded,
}

/// A slot that passed the availability rule.
struct SlotCheck {
    /// The doctor's IANA time zone.
    time_zone: String,
    /// The profile version that the write must still find.
    profile: CheckedProfile,
    /// True when the profile came from memory rather than from the event store.
    remembered: bool,
}

impl SlotCheck {
    /// Returns true when the write was rejected because the profile changed and the
    /// check used a remembered profile, which may have been outdated before the request
    /// arrived. Such a write deserves one more attempt with the loaded profile.
    fn outdated(
        &self,
        outcome: &Result<Committed, TransactionalError<AppointmentError>>,
        appointment_id: Uuid,
    ) -> bool {
        let outdated = self.remembered && matches!(outcome, Err(TransactionalError::Rejected(_)));
        if outdated {
            tracing::info!(
                %appointment_id,
                doctor_id = %self.profile.doctor,
                "doctor profile in memory was outdated; checking the slot again"
            );
        }
        outdated
    }
}

/// Checks the slot with the availability rule that also builds the slot list, against
/// the doctor's profile. Overlaps with other appointments of the doctor or the patient
/// are left to the reservation table's exclusion constraints, which the write meets
/// anyway. A rejection based on a remembered profile is checked again against the
/// loaded one, so an outdated copy never refuses a booking.
async fn check_slot(
    state: &AppState,
    doctor: AccountId,
    slot: &TimeRange,
    source: ProfileSource,
) -> Result<SlotCheck, ApiError> {
    let mut versioned = match source {
        ProfileSource::Remembered => state.profiles.remembered(&state.doctors, doctor).await,
        ProfileSource::Loaded => state.profiles.load(&state.doctors, doctor).await,
    }
    .map_err(from_doctor_error)?;
    loop {
        match bookable(state, doctor, &versioned.profile, slot) {
            Ok(time_zone) => {
                return Ok(SlotCheck {
                    time_zone,
                    profile: CheckedProfile {
                        doctor,
                        sequence: versioned.sequence,
                    },
                    remembered: !versioned.loaded,
                })
            }
            Err(problem) if versioned.loaded => return Err(problem),
            Err(_) => {
                versioned = state
                    .profiles
                    .load(&state.doctors, doctor)
                    .await
                    .map_err(from_doctor_error)?;
            }
        }
    }
}

/// Applies the availability rule to the slot; returns the doctor's time zone.
fn bookable(
    state: &AppState,
    doctor: AccountId,
    profile: &DoctorProfile,
    slot: &TimeRange,
) -> Result<String, ApiError> {
    let schedule = profile
        .schedule()
        .filter(|_| profile.is_bookable())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "doctor-not-bookable",
                "Doctor cannot be booked",
                "doctor_id",
                format!("no verified doctor {doctor} accepts bookings"),
            )
        })?;
    schedule
        .is_bookable(slot.start(), &[], state.clock.now(), &state.booking_policy)
        .map_err(|rejection| slot_problem(slot.start(), rejection))?;
    Ok(schedule.time_zone.name().to_owned())
}

pub fn slot_taken() -> ApiError {
    ApiError::conflict(
        "slot-taken",
        "Slot taken",
        "another appointment already holds this slot; choose another slot from the slot list",
    )
}

pub fn patient_overlap() -> ApiError {
    ApiError::conflict(
        "patient-overlap",
        "Overlapping appointment",
        "you already have an appointment that overlaps this slot; cancel or move it first",
    )
}

fn slot_problem(start: DateTime<Utc>, rejection: SlotRejection) -> ApiError {
    if rejection == SlotRejection::AlreadyBooked {
        return slot_taken();
    }
    ApiError::unprocessable(
        "slot-unavailable",
        "Slot not available",
        "start",
        format!(
            "'{}' cannot be booked: {rejection}",
            // A fraction of a second stays visible, so an off-grid start is not quoted
            // as the valid start it would round to.
            start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
    )
}

pub fn parse_appointment_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::field(
            "appointment_id",
            format!("'{}' is not a valid UUID", truncate(raw, 40)),
        )
    })
}

pub fn not_found(appointment_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("appointment {appointment_id} not found"))
}

/// An appointment as loaded, with the sequence of its last event.
#[derive(Clone)]
pub struct Loaded {
    pub appointment: Appointment,
    pub sequence: usize,
    /// True when the appointment came from the command bus's memory, which may be
    /// behind the event store.
    pub remembered: bool,
}

/// Source of an appointment for [`load_for_party`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppointmentSource {
    /// The event store, for responses that must reflect every committed change.
    Stored,
    /// The state this process last committed, for commands: [`execute`] runs a command
    /// again on the stored state when the remembered one turns out to be behind.
    Remembered,
}

/// Loads an appointment for one of its parties. Anyone else, and anyone on a side not in
/// `sides`, gets the same 404 as for a missing appointment, so ids cannot be probed.
pub async fn load_for_party(
    state: &AppState,
    appointment_id: Uuid,
    session: &Session,
    sides: &[Party],
    source: AppointmentSource,
) -> Result<Loaded, ApiError> {
    let aggregate_id = appointment_id.to_string();
    let loaded = match source {
        AppointmentSource::Stored => state
            .appointments
            .load(&aggregate_id)
            .await
            .map(|(appointment, sequence)| (appointment, sequence, false)),
        AppointmentSource::Remembered => state.appointments.load_remembered(&aggregate_id).await,
    };
    let (appointment, sequence, remembered) = loaded.map_err(|error| {
        ApiError::internal(anyhow::anyhow!("loading an appointment failed: {error}"))
    })?;
    if let Some(patient) = appointment.patient {
        access::patient(patient.0);
    }
    match appointment.party_of(session.account_id) {
        Some(party) if sides.contains(&party) => Ok(Loaded {
            appointment,
            sequence,
            remembered,
        }),
        _ => {
            // Recorded as a denied attempt when the appointment exists.
            if appointment.patient.is_some() {
                access::denied();
            }
            Err(not_found(appointment_id))
        }
    }
}

/// Runs `command` on the appointment as loaded, and updates the reservations in the
/// same transaction, on behalf of `actor`. A write that committed since the load makes
/// this a conflict.
pub async fn execute(
    state: &AppState,
    request: &HttpRequest,
    actor: &Session,
    appointment_id: Uuid,
    loaded: Loaded,
    command: AppointmentCommand,
    effects: &ReservationEffects,
) -> Result<Committed, ApiError> {
    run_command(
        state,
        request,
        actor,
        appointment_id,
        loaded,
        command,
        effects,
    )
    .await
    .map_err(from_appointment_error)
}

/// [`execute`] with the error as the command bus reports it.
async fn run_command(
    state: &AppState,
    request: &HttpRequest,
    actor: &Session,
    appointment_id: Uuid,
    loaded: Loaded,
    command: AppointmentCommand,
    effects: &ReservationEffects,
) -> Result<Committed, TransactionalError<AppointmentError>> {
    let aggregate_id = appointment_id.to_string();
    record_aggregate(request, &aggregate_id);
    let outcome = state
        .appointments
        .execute_loaded_with(
            &aggregate_id,
            loaded.appointment,
            loaded.sequence,
            command.clone(),
            metadata(Some(actor)),
            effects,
        )
        .await;
    let committed = match outcome {
        // A remembered appointment is behind when another process appended since: the
        // append then conflicts, or a rule rejects a state that has passed. The parties
        // never change, so the command runs again on the stored appointment.
        Err(TransactionalError::Aggregate(
            AggregateError::AggregateConflict | AggregateError::UserError(_),
        )) if loaded.remembered => {
            tracing::info!(
                %appointment_id,
                "appointment in memory was outdated; running the command on the stored one"
            );
            state.appointments.forget(&aggregate_id);
            let (appointment, sequence) = state.appointments.load(&aggregate_id).await?;
            state
                .appointments
                .execute_loaded_with(
                    &aggregate_id,
                    appointment,
                    sequence,
                    command,
                    metadata(Some(actor)),
                    effects,
                )
                .await?
        }
        outcome => outcome?,
    };
    // The append checked the actor's session. A command that appended nothing did not.
    if committed.appended > 0 {
        confirm_session(request);
    }
    Ok(committed)
}
