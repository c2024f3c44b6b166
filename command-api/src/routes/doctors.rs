//! Shared parts of the doctor profile endpoints: the doctor's own under `/doctors/me`
//! and the admin's under `/admin/doctors`. The profile's aggregate id is the doctor's
//! account id.

use actix_web::HttpRequest;
use medflow_domain::doctor::{DoctorCommand, DoctorProfile, DoctorStatus};
use medflow_domain::values::{AccountId, Role, SealedValue};
use medflow_domain::FieldError;
use medflow_infra::event_store::Committed;
use medflow_infra::sessions::Session;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::ApiError;

use super::{metadata, record_aggregate};
use crate::error::from_doctor_error;
use crate::state::AppState;

/// Rejects the request with 403 unless the caller is a doctor; returns their account id.
pub fn require_doctor(auth: &Authenticated) -> Result<AccountId, ApiError> {
    auth.require_role(&[Role::Doctor])?;
    Ok(auth.session.account_id)
}

/// Loads a doctor's profile. A doctor who never saved details has a profile in status
/// `New`; callers decide whether that is a 404.
pub async fn load_profile(state: &AppState, doctor: AccountId) -> Result<DoctorProfile, ApiError> {
    let (profile, _) = state
        .doctors
        .load(&doctor.to_string())
        .await
        .map_err(from_doctor_error)?;
    Ok(profile)
}

/// Loads a profile for an admin action, with 404 if the doctor never saved details.
pub async fn load_existing_profile(
    state: &AppState,
    doctor: AccountId,
) -> Result<DoctorProfile, ApiError> {
    let profile = load_profile(state, doctor).await?;
    if profile.status == DoctorStatus::New {
        return Err(ApiError::NotFound(format!(
            "doctor profile {doctor} not found"
        )));
    }
    Ok(profile)
}

/// Runs `command` against the doctor's profile on behalf of `actor`, who is recorded in
/// the event metadata.
pub async fn execute(
    state: &AppState,
    request: &HttpRequest,
    actor: &Session,
    doctor: AccountId,
    command: DoctorCommand,
) -> Result<Committed, ApiError> {
    let doctor_id = doctor.to_string();
    record_aggregate(request, &doctor_id);
    state
        .doctors
        .execute(&doctor_id, command, metadata(Some(actor)))
        .await
        .map_err(from_doctor_error)
}

/// Encrypts a text value under the doctor's data key, bound to `field`.
pub async fn seal_text(
    state: &AppState,
    doctor: AccountId,
    field: &str,
    text: &str,
) -> Result<SealedValue, ApiError> {
    state
        .keys
        .seal(doctor.0, field, text.as_bytes())
        .await
        .map_err(ApiError::internal)
}

/// Checks a length in characters against an inclusive range, naming the field.
pub fn check_length(field: &str, text: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let length = text.chars().count();
    if length < min || length > max {
        return Err(FieldError::new(
            field,
            format!("must be {min} to {max} characters, got {length}"),
        ));
    }
    Ok(())
}

/// Keeps the value of a successful parse and collects the error of a failed one.
pub fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}
