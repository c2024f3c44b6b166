//! Structured logging with tracing. Output is JSON unless `MEDFLOW_LOG_FORMAT=pretty`;
//! the level filter comes from `RUST_LOG` (default [`DEFAULT_FILTER`]).

use tracing_subscriber::EnvFilter;

/// Level filter without `RUST_LOG`. actix-web-prom warns on every request to a route
/// whose pattern contains a regular expression, such as the Swagger UI's `/docs/{_:.*}`,
/// so its warnings are left out.
pub const DEFAULT_FILTER: &str = "info,actix_web_prom=error";

pub fn init(service: &'static str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let pretty = std::env::var("MEDFLOW_LOG_FORMAT").is_ok_and(|format| format == "pretty");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = if pretty {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "logging initialized");
    }
}
