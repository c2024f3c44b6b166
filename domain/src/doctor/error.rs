use uuid::Uuid;

use super::DoctorStatus;

/// Commands a doctor profile's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoctorError {
    #[error("doctor profile not found; save the profile details first")]
    NotFound,
    #[error("cannot {action} a profile that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: DoctorStatus,
    },
    #[error("the profile is incomplete: {0}")]
    Incomplete(&'static str),
    #[error("a profile holds at most {0} license documents")]
    TooManyDocuments(usize),
    #[error("document {0} is already attached")]
    DuplicateDocument(Uuid),
    #[error("this uploaded object is already attached as a license document")]
    DuplicateObject,
    #[error("time off {0} already exists")]
    DuplicateTimeOff(Uuid),
    #[error("time off {0} not found")]
    TimeOffNotFound(Uuid),
    #[error("a profile holds at most {0} time-off entries")]
    TooManyTimeOff(usize),
}
