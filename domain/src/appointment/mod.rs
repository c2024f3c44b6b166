//! The Appointment aggregate: one 30-minute consultation between a patient and a doctor,
//! from booking to completion, cancellation or no-show, plus the video room activity
//! that LiveKit reports for it.
//!
//! The aggregate enforces its own life cycle only. Whether a slot is free for the
//! doctor and the patient spans many appointments, so the command API checks it with the
//! availability rule and the database enforces it with exclusion constraints written in
//! the same transaction as the events.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{Appointment, AppointmentStatus, MAX_REMEMBERED_WEBHOOKS};
pub use commands::AppointmentCommand;
pub use error::AppointmentError;
pub use events::{AppointmentEvent, ConsultationKind, Party, VideoActivity};
