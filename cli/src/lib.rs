//! Library part of the operator CLI: HTTP helpers shared by `medflow demo` and
//! `medflow seed`, and the seeding itself, which the end-to-end tests call with the base
//! URLs of their own services.

pub mod http;
pub mod metrics;
pub mod platform;
pub mod seed;
