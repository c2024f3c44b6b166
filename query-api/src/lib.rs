//! The query API: reads the read models the projectors maintain. Requests may ask to
//! wait (bounded) until a projection has applied a given sequence, so a client can
//! read its own writes.

pub mod configuration;
pub mod consistency;
pub mod cursor;
pub mod directory_cache;
pub mod doctor_cache;
pub mod notifications;
pub mod openapi;
pub mod query_params;
pub mod routes;
pub mod startup;
pub mod state;

pub use configuration::QueryApiSettings;
pub use startup::Application;
