//! The projection framework: the [`Projection`] trait, idempotent application,
//! the Kafka runner, rebuilds, the rebuild check, lag metrics and stall detection.

mod apply;
pub mod metrics;
pub mod progress;
mod rebuild;
pub mod rebuild_check;
mod runner;
mod transaction;

pub use apply::{apply_event, apply_events, Applied};
pub use rebuild::rebuild;
pub use rebuild_check::{check_read_models, CheckReport};
pub use runner::{group_id, run};
pub use transaction::ReadModelTransaction;

use async_trait::async_trait;
use medflow_infra::events::StoredEvent;

/// A read model derived from events.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: consumer group suffix and key of its offsets.
    fn name(&self) -> &'static str;

    /// Aggregate types (and so topics) this projection consumes.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// Tables that hold this projection's state; a rebuild truncates them. `apply` must
    /// name them without a schema and write no other table, because the rebuild check
    /// redirects these names to temporary copies through `search_path`.
    fn tables(&self) -> &'static [&'static str];

    /// Applies one event inside the framework's transaction. Events reach it in sequence
    /// order per aggregate, and its changes commit at most once per (aggregate, sequence);
    /// a failed transaction is rolled back and the event applied again.
    async fn apply(
        &self,
        transaction: &ReadModelTransaction<'_>,
        event: &StoredEvent,
    ) -> anyhow::Result<()>;
}

/// Advisory lock key shared by a projection's writers (shared mode) and its rebuild
/// (exclusive mode), so a rebuild never interleaves with live application.
fn lock_key(projection: &str) -> String {
    format!("medflow-projection:{projection}")
}
