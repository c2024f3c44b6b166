use uuid::Uuid;

use super::{LicenseDocument, ProfileDetails};
use crate::availability::{TimeRange, WeeklyAvailability};
use crate::values::{AccountId, SealedValue};

#[derive(Debug, Clone)]
pub enum DoctorCommand {
    /// Saves the doctor's details; the first save creates the profile as a draft.
    UpdateProfile {
        doctor: AccountId,
        details: ProfileDetails,
    },
    AttachLicenseDocument {
        document: LicenseDocument,
    },
    SubmitForVerification,
    Approve {
        by: AccountId,
    },
    Reject {
        reason: SealedValue,
        by: AccountId,
    },
    Suspend {
        reason: SealedValue,
        by: AccountId,
    },
    Reinstate {
        by: AccountId,
    },
    SetWeeklyAvailability {
        weekly: WeeklyAvailability,
    },
    AddTimeOff {
        time_off_id: Uuid,
        range: TimeRange,
    },
    RemoveTimeOff {
        time_off_id: Uuid,
    },
}
