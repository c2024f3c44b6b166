//! Prometheus metrics of the projectors, labelled by projection.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::progress::ProgressBoard;

#[derive(Clone)]
pub struct ProjectorMetrics {
    pub applied: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub failures: IntCounterVec,
    /// Messages between the committed position and the partition's high watermark.
    pub lag: IntGaugeVec,
    /// Seconds a projection has been behind without committing anything.
    pub stalled: IntGaugeVec,
    /// The same stalls, for the readiness check.
    pub progress: ProgressBoard,
}

impl ProjectorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            applied: IntCounterVec::new(
                Opts::new(
                    "medflow_projector_applied_events_total",
                    "Events applied to a read model",
                ),
                &["projection"],
            )?,
            duplicates: IntCounterVec::new(
                Opts::new(
                    "medflow_projector_duplicate_events_total",
                    "Redelivered events skipped by sequence",
                ),
                &["projection"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "medflow_projector_failures_total",
                    "Failed attempts to apply an event",
                ),
                &["projection"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "medflow_projector_lag_messages",
                    "Kafka consumer lag of a projection per partition",
                ),
                &["projection", "topic", "partition"],
            )?,
            stalled: IntGaugeVec::new(
                Opts::new(
                    "medflow_projector_stalled_seconds",
                    "Seconds a projection has been behind its topics without committing progress",
                ),
                &["projection"],
            )?,
            progress: ProgressBoard::default(),
        };
        registry.register(Box::new(metrics.applied.clone()))?;
        registry.register(Box::new(metrics.duplicates.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.stalled.clone()))?;
        Ok(metrics)
    }

    /// Creates the projection's counters at zero, so dashboards see them before the
    /// first event, duplicate or failure.
    pub fn export_zero(&self, projection: &str) {
        self.applied.with_label_values(&[projection]);
        self.duplicates.with_label_values(&[projection]);
        self.failures.with_label_values(&[projection]);
        self.stalled.with_label_values(&[projection]);
    }
}
