//! Maps write-side failures onto problem responses.

use cqrs_es::AggregateError;
use medflow_domain::account::AccountError;
use medflow_domain::appointment::AppointmentError;
use medflow_domain::doctor::DoctorError;
use medflow_infra::event_store::TransactionalError;
use medflow_infra::web::auth::SESSION_ENDED;
use medflow_infra::web::ApiError;

use crate::reservations::{DOCTOR_OVERLAP, PATIENT_OVERLAP};
use crate::routes::appointments::{patient_overlap, slot_taken};

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

/// Maps a failed doctor profile command that ran with transactional effects.
pub fn from_doctor_transaction_error(error: TransactionalError<DoctorError>) -> ApiError {
    match error {
        TransactionalError::Aggregate(error) => from_doctor_error(error),
        TransactionalError::Rejected(reason) => ApiError::Conflict(reason),
        TransactionalError::Deadlocked => concurrent_write(),
        TransactionalError::SessionEnded => session_ended(),
        TransactionalError::Excluded(constraint) => ApiError::internal(anyhow::anyhow!(
            "unexpected exclusion constraint {constraint}"
        )),
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

/// Maps a failed appointment command to a problem. Exclusion violations mean that a
/// concurrent booking took the interval between the check and the commit.
pub fn from_appointment_error(error: TransactionalError<AppointmentError>) -> ApiError {
    match error {
        TransactionalError::Excluded(constraint) if constraint == PATIENT_OVERLAP => {
            patient_overlap()
        }
        TransactionalError::Excluded(constraint) if constraint == DOCTOR_OVERLAP => slot_taken(),
        TransactionalError::Excluded(constraint) => ApiError::internal(anyhow::anyhow!(
            "unexpected exclusion constraint {constraint}"
        )),
        TransactionalError::Rejected(reason) => {
            ApiError::conflict("schedule-changed", "Schedule changed", reason)
        }
        TransactionalError::Deadlocked => concurrent_write(),
        TransactionalError::SessionEnded => session_ended(),
        TransactionalError::Aggregate(AggregateError::UserError(error)) => {
            appointment_problem(error)
        }
        TransactionalError::Aggregate(AggregateError::AggregateConflict) => ApiError::Conflict(
            "the appointment was changed by a concurrent request; reload it and retry".to_owned(),
        ),
        TransactionalError::Aggregate(other) => {
            ApiError::internal(anyhow::anyhow!("appointment command failed: {other}"))
        }
    }
}

/// Returns the 409 for a write that PostgreSQL aborted twice to resolve a deadlock with
/// concurrent writes of the same calendar.
fn concurrent_write() -> ApiError {
    ApiError::Conflict(
        "concurrent requests changed the same calendar at the same moment; retry the request"
            .to_owned(),
    )
}

/// Returns the 401 for a command whose session was revoked before its write.
fn session_ended() -> ApiError {
    ApiError::Unauthorized(SESSION_ENDED)
}

/// Maps a rule of the appointment aggregate to a problem, with the rule's own text.
pub fn appointment_problem(error: AppointmentError) -> ApiError {
    let detail = error.to_string();
    match error {
        AppointmentError::NotFound => ApiError::NotFound(detail),
        AppointmentError::AlreadyBooked => ApiError::Conflict(detail),
        AppointmentError::InvalidTransition { .. } => {
            ApiError::conflict("invalid-transition", "Invalid state transition", detail)
        }
        AppointmentError::TooEarly { .. } => ApiError::conflict("too-early", "Too early", detail),
        AppointmentError::TooLate { .. } => ApiError::conflict("too-late", "Too late", detail),
        AppointmentError::SameSlot => ApiError::field("start", detail),
    }
}
