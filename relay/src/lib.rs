//! The relay: copies committed events from the PostgreSQL event table to Kafka.
//!
//! No-skip rule: a row's `global_position` is taken when it is inserted, but rows
//! become visible when their transaction commits, so a poller that remembers "highest
//! position seen" loses a row whose slow transaction commits after a faster one with a
//! higher position. The relay instead reads rows in `(transaction_id, global_position)`
//! order and only those whose transaction id is below the snapshot's `xmin`: every
//! transaction below `xmin` has finished, and every transaction still running or yet to
//! start has an id at or above it. So once the relay has passed a
//! `(transaction_id, global_position)` pair, no row can appear before it any more.
//!
//! Delivery is at least once: the checkpoint is saved only after Kafka acknowledged
//! (acks=all, idempotent producer) every record of a batch, so a crash re-sends at most
//! one batch, which consumers skip by sequence.

pub mod checkpoint;
pub mod metrics;
pub mod poller;
pub mod publisher;
pub mod sealer;
pub mod settings;
pub mod worker;

pub use settings::RelaySettings;
pub use worker::Relay;
