use chrono::{DateTime, Utc};

use super::{Party, VideoActivity};
use crate::availability::TimeRange;
use crate::values::{AccountId, SealedValue};

/// Commands on one appointment. The caller has already checked who may send each one
/// and, for `Book` and `Reschedule`, that the availability rule accepts the slot.
#[derive(Debug, Clone)]
pub enum AppointmentCommand {
    Book {
        patient: AccountId,
        doctor: AccountId,
        slot: TimeRange,
        doctor_time_zone: String,
    },
    Reschedule {
        to: TimeRange,
        now: DateTime<Utc>,
    },
    Cancel {
        by: Party,
        actor: AccountId,
        reason: SealedValue,
        now: DateTime<Utc>,
    },
    Start {
        actor: AccountId,
        now: DateTime<Utc>,
    },
    Complete {
        actor: AccountId,
        now: DateTime<Utc>,
    },
    MarkNoShow {
        actor: AccountId,
        now: DateTime<Utc>,
    },
    RecordVideoActivity {
        webhook_id: String,
        activity: VideoActivity,
        at: DateTime<Utc>,
    },
}
