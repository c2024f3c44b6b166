use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::availability::TimeRange;
use crate::values::{AccountId, SealedValue};

/// The two people an appointment is between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Patient,
    Doctor,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Patient => "patient",
            Party::Doctor => "doctor",
        }
    }
}

/// Activity in the appointment's video room, as reported by LiveKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VideoActivity {
    RoomStarted,
    ParticipantJoined { participant: Party },
    ParticipantLeft { participant: Party },
    RoomFinished,
}

/// How the consultation takes place. Only video today; stated in every booking since
/// event version 2 so that other kinds can follow without guessing old bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationKind {
    Video,
}

/// Facts about an appointment. People appear only as account ids; the cancellation
/// reason is sealed under the patient's data key because it may describe their health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppointmentEvent {
    AppointmentBooked {
        patient: AccountId,
        doctor: AccountId,
        slot: TimeRange,
        /// The doctor's IANA time zone when the appointment was booked, for display.
        doctor_time_zone: String,
        consultation: ConsultationKind,
    },
    AppointmentRescheduled {
        from: TimeRange,
        to: TimeRange,
    },
    AppointmentCancelled {
        cancelled_by: Party,
        actor: AccountId,
        reason: SealedValue,
    },
    AppointmentStarted {
        started_by: AccountId,
        at: DateTime<Utc>,
    },
    AppointmentCompleted {
        completed_by: AccountId,
        at: DateTime<Utc>,
    },
    AppointmentMarkedNoShow {
        marked_by: AccountId,
        at: DateTime<Utc>,
    },
    /// A signed LiveKit webhook, recorded once per webhook id.
    VideoActivityRecorded {
        webhook_id: String,
        activity: VideoActivity,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AppointmentEvent {
    fn event_type(&self) -> String {
        match self {
            AppointmentEvent::AppointmentBooked { .. } => "AppointmentBooked",
            AppointmentEvent::AppointmentRescheduled { .. } => "AppointmentRescheduled",
            AppointmentEvent::AppointmentCancelled { .. } => "AppointmentCancelled",
            AppointmentEvent::AppointmentStarted { .. } => "AppointmentStarted",
            AppointmentEvent::AppointmentCompleted { .. } => "AppointmentCompleted",
            AppointmentEvent::AppointmentMarkedNoShow { .. } => "AppointmentMarkedNoShow",
            AppointmentEvent::VideoActivityRecorded { .. } => "VideoActivityRecorded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            // Version 2 added `consultation`; see `upcasting`.
            AppointmentEvent::AppointmentBooked { .. } => "2",
            _ => "1",
        }
        .to_owned()
    }
}
