//! Harness for end-to-end tests against the real local stack (`medflow stack up`).
//! Each test gets a fresh database cloned from a migrated template, topics and consumer
//! groups under its own prefix, and random keys. Services run on free ports, either in
//! this process or as child processes that a test may SIGKILL.

pub mod api;
pub mod broker;
pub mod database;
pub mod env;
pub mod fhir;
pub mod fixtures;
pub mod kafka;
pub mod livekit;
pub mod mail;
pub mod process;
pub mod wait;

pub use env::TestEnv;
