//! Adapters shared by MedFlow's services.
//!
//! - [`db`]: PostgreSQL pools and schema migrations.
//! - [`event_store`]: cqrs-es on postgres-es, returning committed sequences.
//! - [`events`]: the wire form of a stored event, shared by relay and projectors.
//! - [`crypto`]: master and data keys, sealing personal data, e-mail index, passwords.
//! - [`sessions`] and [`audit`]: database-backed sessions and the security audit trail.
//! - [`listener`]: one connection per process that `LISTEN`s for database announcements.
//! - [`kafka`]: client configuration and topic names.
//! - [`object_store`]: presigned upload and download URLs for documents in S3.
//! - [`video`]: LiveKit access tokens for appointment rooms and webhook verification.
//! - [`web`]: problem responses, request ids, authentication, health and metrics.
//! - [`telemetry`] and [`config`]: logging and settings from the environment.

pub mod audit;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod event_store;
pub mod events;
pub mod kafka;
pub mod listener;
pub mod object_store;
pub mod sessions;
pub mod telemetry;
pub mod video;
pub mod web;
