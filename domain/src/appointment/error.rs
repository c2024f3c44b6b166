use super::AppointmentStatus;

/// Commands an appointment's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppointmentError {
    #[error("appointment not found")]
    NotFound,
    #[error("the appointment already exists")]
    AlreadyBooked,
    #[error("cannot {action} an appointment that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: AppointmentStatus,
    },
    #[error("cannot {action} the appointment yet: {reason}")]
    TooEarly {
        action: &'static str,
        reason: &'static str,
    },
    #[error("cannot {action} the appointment any more: {reason}")]
    TooLate {
        action: &'static str,
        reason: &'static str,
    },
    #[error("the new slot is the appointment's current slot; choose a different start")]
    SameSlot,
}
