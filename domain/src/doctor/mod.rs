//! The DoctorProfile aggregate: professional details, license documents, verification
//! by an admin, suspension, and the weekly availability and time off that slots are
//! computed from. Its id is the doctor's account id.
//!
//! States: a profile is `Draft` once the doctor saved details, `Submitted` when sent for
//! verification, then `Verified` or `Rejected` by an admin. Only a verified profile
//! appears in the directory and can be booked; `Suspended` removes it again until an
//! admin reinstates it. Changing license data or adding a license document after
//! verification sends the profile back to `Submitted`.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::{DoctorProfile, DoctorStatus};
pub use commands::DoctorCommand;
pub use error::DoctorError;
pub use events::{DoctorEvent, ReviewTrigger};
pub use values::{
    Language, LicenseDocument, ProfileDetails, Specialty, MAX_LANGUAGES, MAX_LICENSE_DOCUMENTS,
    SPECIALTIES,
};
