//! Maps write-side failures onto problem responses.

use cqrs_es::AggregateError;
use medflow_domain::account::AccountError;
use medflow_domain::doctor::DoctorError;
use medflow_infra::web::ApiError;

pub fn from_account_error(error: AggregateError<AccountError>) -> ApiError {
    match error {
        AggregateError::UserError(AccountError::NotFound) => {
            ApiError::NotFound("account not found".to_owned())
        }
        AggregateError::UserError(AccountError::CannotSuspendSelf) => {
            ApiError::Forbidden(AccountError::CannotSuspendSelf.to_string())
        }
        AggregateError::UserError(other) => ApiError::Conflict(other.to_string()),
        AggregateError::AggregateConflict => ApiError::Conflict(
            "the account was changed by a concurrent request; reload it and retry".to_owned(),
        ),
        other => ApiError::internal(anyhow::anyhow!("account command failed: {other}")),
    }
}

/// Maps a failed doctor profile command to a problem.
///
/// A command that the profile's current state does not allow is a 409 conflict. That
/// includes an incomplete profile: the request is well-formed and succeeds once the
/// profile changes, for example after a license document is attached, so it is not a
/// 422 about the request's content.
pub fn from_doctor_error(error: AggregateError<DoctorError>) -> ApiError {
    match error {
        AggregateError::UserError(error) => doctor_problem(error),
        AggregateError::AggregateConflict => ApiError::Conflict(
            "the doctor profile was changed by a concurrent request; reload it and retry"
                .to_owned(),
        ),
        other => ApiError::internal(anyhow::anyhow!("doctor command failed: {other}")),
    }
}

/// Maps a rule of the doctor profile aggregate to a problem, with the rule's own text.
pub fn doctor_problem(error: DoctorError) -> ApiError {
    match error {
        DoctorError::NotFound | DoctorError::TimeOffNotFound(_) => {
            ApiError::NotFound(error.to_string())
        }
        DoctorError::InvalidTransition { .. }
        | DoctorError::Incomplete(_)
        | DoctorError::TooManyDocuments(_)
        | DoctorError::DuplicateDocument(_)
        | DoctorError::DuplicateObject
        | DoctorError::DuplicateTimeOff(_)
        | DoctorError::TooManyTimeOff(_) => ApiError::Conflict(error.to_string()),
    }
}
