//! Projectors: Kafka consumers that keep read models in PostgreSQL.
//!
//! Each projection has its own consumer group. An event is applied in one database
//! transaction together with the projection's last applied sequence for that aggregate,
//! so a redelivered event changes nothing, and the Kafka offset is stored only after
//! that transaction committed. A projection can be dropped and rebuilt from the event
//! store at any time; the rebuilt state equals the live one.

pub mod framework;
pub mod projections;
pub mod settings;

pub use framework::Projection;
pub use settings::ProjectorSettings;

use std::sync::Arc;

/// Returns every projection this service maintains.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(projections::accounts::AccountsProjection),
        Arc::new(projections::doctors::DoctorsProjection),
        Arc::new(projections::appointments::AppointmentsProjection),
    ]
}
