//! Prometheus metrics: HTTP request counts and latency histograms per endpoint from
//! actix-web-prom, plus whatever the service registers in the same registry.

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::Registry;

/// Middleware that records request metrics and serves them at `/metrics`.
pub fn http_metrics(namespace: &str, registry: Registry) -> anyhow::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new(namespace)
        .registry(registry)
        .endpoint("/metrics")
        .build()
        .map_err(|error| anyhow::anyhow!("failed to build HTTP metrics: {error}"))
}
