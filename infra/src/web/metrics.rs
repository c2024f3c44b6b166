//! Prometheus metrics: HTTP request counts and latency histograms per endpoint from
//! actix-web-prom, plus whatever the service registers in the same registry.

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::Registry;

/// Middleware that records request metrics and serves them at `/metrics`. Requests
/// that match no route share the endpoint label `unmatched`, so random paths cannot
/// create unbounded series.
///
/// The middleware still passes `/metrics` requests to the app and replaces the body, so
/// the app must route `/metrics` (see [`metrics_route`]) or its 404 handler logs an error.
pub fn http_metrics(namespace: &str, registry: Registry) -> anyhow::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new(namespace)
        .registry(registry)
        .endpoint("/metrics")
        .mask_unmatched_patterns("unmatched")
        .build()
        .map_err(|error| anyhow::anyhow!("failed to build HTTP metrics: {error}"))
}

/// Registers `GET /metrics`; its empty body is replaced by the metrics middleware.
pub fn metrics_route(config: &mut actix_web::web::ServiceConfig) {
    config.route(
        "/metrics",
        actix_web::web::get().to(actix_web::HttpResponse::Ok),
    );
}
