//! The benchmark's log output: warnings and errors of the services it runs in-process.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Level filter without `RUST_LOG`. Request logs cost CPU on every request, so the
/// services log only warnings and errors, such as a projector that cannot join its
/// consumer group. tracing-actix-web would log a warning for each of the seeding's
/// expected 409s.
const DEFAULT_FILTER: &str = "warn,actix_web_prom=error,tracing_actix_web=error";

static SILENCED: AtomicBool = AtomicBool::new(false);

/// Writes JSON log lines to stderr, filtered by `RUST_LOG` or [`DEFAULT_FILTER`].
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let output = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(std::io::stderr)
        .with_filter(filter)
        .with_filter(filter_fn(|_| !SILENCED.load(Ordering::Relaxed)));
    tracing_subscriber::registry().with(output).init();
}

/// Stops all log output, once the results are printed. Dropping the benchmark's database
/// then cuts the connections of services that are still running, and each of them would
/// log a warning about it.
pub fn silence() {
    SILENCED.store(true, Ordering::Relaxed);
}
