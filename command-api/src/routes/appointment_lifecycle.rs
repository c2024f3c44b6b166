//! The rest of an appointment's life: cancellation by either party, and start,
//! completion and no-show by the doctor.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::appointment::{AppointmentCommand, Party};
use medflow_domain::values::Role;
use medflow_infra::web::auth::AuthenticatedCommand;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::admin_accounts::REASON_MAX_LEN;
use super::appointments::{
    execute, load_for_party, not_found, parse_appointment_id, AppointmentSource,
};
use super::doctors::check_length;
use super::CommandAccepted;
use crate::reservations::ReservationEffects;
use crate::state::SharedState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancellationRequest {
    /// Reason for the cancellation, 1 to 500 characters. It may describe the patient's
    /// health, so it is stored encrypted under the patient's data key.
    pub reason: String,
}

impl RequestBody for CancellationRequest {
    const FIELDS: &'static [Field] = &[Field::sensitive("reason", JsonKind::String)];
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/cancellation",
    tag = "appointments",
    request_body = CancellationRequest,
    params(("appointment_id" = Uuid, Path, description = "The appointment to cancel")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Appointment cancelled; its slot is free again", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is neither a patient nor a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`urn:medflow:problem:invalid-transition`: the appointment is not booked (started, completed, cancelled); `urn:medflow:problem:too-late`: its slot has ended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The reason is missing or longer than 500 characters", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    body: JsonBody<CancellationRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Patient, Role::Doctor])?;
    let appointment_id = parse_appointment_id(&path)?;
    let reason = body.reason.trim();
    check_length("reason", reason, 1, REASON_MAX_LEN)?;
    let loaded = load_for_party(
        &state,
        appointment_id,
        &auth.session,
        &[Party::Patient, Party::Doctor],
        AppointmentSource::Remembered,
    )
    .await?;
    let (Some(patient), Some(by)) = (
        loaded.appointment.patient,
        loaded.appointment.party_of(auth.session.account_id),
    ) else {
        return Err(not_found(appointment_id));
    };

    let reason = state
        .keys
        .seal(patient.0, "appointment_cancel_reason", reason.as_bytes())
        .await
        .map_err(ApiError::internal)?;
    let command = AppointmentCommand::Cancel {
        by,
        actor: auth.session.account_id,
        reason,
        now: state.clock.now(),
    };
    let effects = ReservationEffects::default();
    let committed = execute(
        &state,
        &request,
        &auth.session,
        appointment_id,
        loaded,
        command,
        &effects,
    )
    .await?;
    tracing::info!(
        %appointment_id,
        cancelled_by = by.as_str(),
        sequence = committed.sequence,
        "appointment cancelled"
    );
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

/// Step of the consultation that the doctor records.
#[derive(Debug, Clone, Copy)]
enum DoctorStep {
    Start,
    Complete,
    NoShow,
}

async fn doctor_step(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    step: DoctorStep,
) -> Result<HttpResponse, ApiError> {
    auth.require_role(&[Role::Doctor])?;
    let appointment_id = parse_appointment_id(&path)?;
    let loaded = load_for_party(
        &state,
        appointment_id,
        &auth.session,
        &[Party::Doctor],
        AppointmentSource::Remembered,
    )
    .await?;
    let actor = auth.session.account_id;
    let now = state.clock.now();
    let command = match step {
        DoctorStep::Start => AppointmentCommand::Start { actor, now },
        DoctorStep::Complete => AppointmentCommand::Complete { actor, now },
        DoctorStep::NoShow => AppointmentCommand::MarkNoShow { actor, now },
    };
    let effects = ReservationEffects::default();
    let committed = execute(
        &state,
        &request,
        &auth.session,
        appointment_id,
        loaded,
        command,
        &effects,
    )
    .await?;
    tracing::info!(%appointment_id, step = ?step, sequence = committed.sequence, "appointment updated");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/start",
    tag = "appointments",
    params(("appointment_id" = Uuid, Path, description = "The appointment to start")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Consultation started", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the calling doctor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not booked (`invalid-transition`), more than 10 minutes before the start (`too-early`), or after the slot end (`too-late`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    doctor_step(request, auth, state, path, DoctorStep::Start).await
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/completion",
    tag = "appointments",
    params(("appointment_id" = Uuid, Path, description = "The appointment to complete")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Consultation completed", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the calling doctor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The consultation is not in progress (`invalid-transition`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    doctor_step(request, auth, state, path, DoctorStep::Complete).await
}

#[utoipa::path(
    post,
    path = "/appointments/{appointment_id}/no-show",
    tag = "appointments",
    params(("appointment_id" = Uuid, Path, description = "The appointment the patient missed")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Appointment marked as a no-show", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No appointment with this id for the calling doctor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not booked (`invalid-transition`) or less than 10 minutes after the start (`too-early`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn no_show(
    request: HttpRequest,
    auth: AuthenticatedCommand,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    doctor_step(request, auth, state, path, DoctorStep::NoShow).await
}
