use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{LicenseDocument, ProfileDetails};
use crate::availability::{TimeRange, WeeklyAvailability};
use crate::values::{AccountId, SealedValue};

/// Cause of a verified profile going back to review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewTrigger {
    LicenseChanged,
    DocumentAdded,
}

/// Facts about a doctor profile. Personal values appear only sealed or as keyed hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DoctorEvent {
    ProfileUpdated {
        doctor: AccountId,
        details: ProfileDetails,
    },
    LicenseDocumentAttached {
        document: LicenseDocument,
    },
    SubmittedForVerification,
    ReturnedForReview {
        trigger: ReviewTrigger,
    },
    DoctorVerified {
        verified_by: AccountId,
    },
    DoctorRejected {
        reason: SealedValue,
        rejected_by: AccountId,
    },
    DoctorSuspended {
        reason: SealedValue,
        suspended_by: AccountId,
    },
    DoctorReinstated {
        reinstated_by: AccountId,
    },
    WeeklyAvailabilitySet {
        weekly: WeeklyAvailability,
    },
    TimeOffAdded {
        time_off_id: Uuid,
        range: TimeRange,
    },
    TimeOffRemoved {
        time_off_id: Uuid,
    },
}

impl DomainEvent for DoctorEvent {
    fn event_type(&self) -> String {
        match self {
            DoctorEvent::ProfileUpdated { .. } => "ProfileUpdated",
            DoctorEvent::LicenseDocumentAttached { .. } => "LicenseDocumentAttached",
            DoctorEvent::SubmittedForVerification => "SubmittedForVerification",
            DoctorEvent::ReturnedForReview { .. } => "ReturnedForReview",
            DoctorEvent::DoctorVerified { .. } => "DoctorVerified",
            DoctorEvent::DoctorRejected { .. } => "DoctorRejected",
            DoctorEvent::DoctorSuspended { .. } => "DoctorSuspended",
            DoctorEvent::DoctorReinstated { .. } => "DoctorReinstated",
            DoctorEvent::WeeklyAvailabilitySet { .. } => "WeeklyAvailabilitySet",
            DoctorEvent::TimeOffAdded { .. } => "TimeOffAdded",
            DoctorEvent::TimeOffRemoved { .. } => "TimeOffRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
