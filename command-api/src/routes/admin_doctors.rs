//! Admin decisions on doctor profiles: approval, rejection, suspension and
//! reinstatement. The event metadata records the admin as the actor, and the events
//! name the admin too.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::doctor::DoctorCommand;
use medflow_domain::values::{AccountId, Role};
use medflow_domain::FieldError;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::admin_accounts::REASON_MAX_LEN;
use super::doctors::{check_length, execute, load_existing_profile, seal_text};
use super::{record_aggregate, CommandAccepted};
use crate::state::SharedState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Reason for the decision, 1 to 500 characters. Stored encrypted under the
    /// doctor's data key.
    pub reason: String,
}

impl RequestBody for ReasonRequest {
    const FIELDS: &'static [Field] = &[Field::sensitive("reason", JsonKind::String)];
}

/// Checks the caller is an admin and parses the doctor id of the path.
fn admin_target(
    request: &HttpRequest,
    auth: &Authenticated,
    path: &str,
) -> Result<AccountId, ApiError> {
    auth.require_role(&[Role::Admin])?;
    let doctor = AccountId::parse("doctor_id", path)?;
    record_aggregate(request, &doctor.to_string());
    Ok(doctor)
}

fn parse_reason(raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    check_length("reason", trimmed, 1, REASON_MAX_LEN)?;
    Ok(trimmed.to_owned())
}

#[utoipa::path(
    post,
    path = "/admin/doctors/{doctor_id}/approval",
    tag = "admin",
    params(("doctor_id" = String, Path, description = "Account id of the doctor")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Doctor verified; the profile can appear in the directory", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No doctor profile with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is not submitted for verification, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The doctor id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn approve(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let doctor = admin_target(&request, &auth, &path)?;
    load_existing_profile(&state, doctor).await?;
    let command = DoctorCommand::Approve {
        by: auth.session.account_id,
    };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor verified");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/admin/doctors/{doctor_id}/rejection",
    tag = "admin",
    request_body = ReasonRequest,
    params(("doctor_id" = String, Path, description = "Account id of the doctor")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Verification rejected; the doctor may correct the profile and submit again", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No doctor profile with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is not submitted for verification, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid doctor id or reason", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reject(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    body: JsonBody<ReasonRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = admin_target(&request, &auth, &path)?;
    let reason = parse_reason(&body.reason)?;
    // Checked before sealing, which would otherwise create a data key for an unknown id.
    load_existing_profile(&state, doctor).await?;
    let command = DoctorCommand::Reject {
        reason: seal_text(&state, doctor, "rejection_reason", &reason).await?,
        by: auth.session.account_id,
    };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor verification rejected");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/admin/doctors/{doctor_id}/suspension",
    tag = "admin",
    request_body = ReasonRequest,
    params(("doctor_id" = String, Path, description = "Account id of the doctor")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Doctor suspended: removed from the directory and not bookable. The doctor's account and existing history stay", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No doctor profile with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is not verified, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid doctor id or reason", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn suspend(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
    body: JsonBody<ReasonRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = admin_target(&request, &auth, &path)?;
    let reason = parse_reason(&body.reason)?;
    load_existing_profile(&state, doctor).await?;
    let command = DoctorCommand::Suspend {
        reason: seal_text(&state, doctor, "doctor_suspension_reason", &reason).await?,
        by: auth.session.account_id,
    };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor suspended");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    delete,
    path = "/admin/doctors/{doctor_id}/suspension",
    tag = "admin",
    params(("doctor_id" = String, Path, description = "Account id of the doctor")),
    security(("session" = [])),
    responses(
        (status = 202, description = "Doctor reinstated as verified", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No doctor profile with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is not suspended, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The doctor id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reinstate(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let doctor = admin_target(&request, &auth, &path)?;
    load_existing_profile(&state, doctor).await?;
    let command = DoctorCommand::Reinstate {
        by: auth.session.account_id,
    };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor reinstated");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}
