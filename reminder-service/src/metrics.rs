//! Prometheus metrics of the reminder service.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct ReminderMetrics {
    /// Reminders waiting to be sent.
    pub pending: IntGauge,
    pub sent: IntCounter,
    /// Reminders given up because the appointment started before they could be sent.
    pub failed: IntCounter,
    /// SMTP attempts that failed and will be retried.
    pub send_errors: IntCounter,
    /// Actual send time minus due time, in seconds.
    pub send_delay: Histogram,
}

impl ReminderMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            pending: IntGauge::new("medflow_reminders_pending", "Reminders waiting to be sent")?,
            sent: IntCounter::new("medflow_reminders_sent_total", "Reminders sent")?,
            failed: IntCounter::new(
                "medflow_reminders_failed_total",
                "Reminders given up because the appointment started before they were sent",
            )?,
            send_errors: IntCounter::new(
                "medflow_reminders_send_errors_total",
                "Failed SMTP attempts, each retried with backoff",
            )?,
            send_delay: Histogram::with_opts(
                HistogramOpts::new(
                    "medflow_reminders_send_delay_seconds",
                    "Time between a reminder's due time and its sending",
                )
                .buckets(vec![
                    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
                ]),
            )?,
        };
        registry.register(Box::new(metrics.pending.clone()))?;
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.failed.clone()))?;
        registry.register(Box::new(metrics.send_errors.clone()))?;
        registry.register(Box::new(metrics.send_delay.clone()))?;
        Ok(metrics)
    }
}
