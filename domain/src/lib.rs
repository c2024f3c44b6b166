//! MedFlow's domain: aggregates with pure command handling and event application,
//! and the validated value types they are built from. Nothing here performs I/O.

pub mod account;
pub mod appointment;
pub mod availability;
pub mod doctor;
pub mod rfc3339;
pub mod upcasting;
pub mod validation;
pub mod values;

pub use validation::FieldError;
