//! The command API: validates requests, seals personal data, runs commands against
//! aggregates and returns the aggregate id with the committed sequence.

pub mod configuration;
pub mod error;
pub mod openapi;
pub mod profiles;
pub mod rate_limit;
pub mod reservations;
pub mod routes;
pub mod startup;
pub mod state;

pub use configuration::CommandApiSettings;
pub use startup::Application;
