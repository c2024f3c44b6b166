//! Prometheus metrics of the relay.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct RelayMetrics {
    pub published: IntCounter,
    pub failures: IntCounter,
    pub backlog: IntGauge,
    pub checkpoint_position: IntGauge,
}

impl RelayMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            published: IntCounter::with_opts(Opts::new(
                "medflow_relay_published_events_total",
                "Events published to Kafka and acknowledged",
            ))?,
            failures: IntCounter::with_opts(Opts::new(
                "medflow_relay_publish_failures_total",
                "Batches that failed to publish and will be retried",
            ))?,
            backlog: IntGauge::with_opts(Opts::new(
                "medflow_relay_lag_events",
                "Events in the event table not yet published to Kafka",
            ))?,
            checkpoint_position: IntGauge::with_opts(Opts::new(
                "medflow_relay_checkpoint_position",
                "Global position of the last published event",
            ))?,
        };
        registry.register(Box::new(metrics.published.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.backlog.clone()))?;
        registry.register(Box::new(metrics.checkpoint_position.clone()))?;
        Ok(metrics)
    }
}
