//! Harness for end-to-end tests against the real local stack (`medflow stack up`):
//! a fresh database per test cloned from a migrated template, topics and consumer
//! groups under a per-test prefix, random keys, and the services on free ports, either
//! in this process or as child processes that a test may SIGKILL.

pub mod api;
pub mod broker;
pub mod database;
pub mod env;
pub mod kafka;
pub mod process;
pub mod wait;

pub use env::TestEnv;
