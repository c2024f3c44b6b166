//! The read models, one module each.

pub mod accounts;
pub mod appointments;
pub mod doctors;
