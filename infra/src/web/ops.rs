//! The small HTTP endpoint of background services (relay, projectors, reminders):
//! liveness, readiness and Prometheus metrics.

use std::net::SocketAddr;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use super::health::{self, Readiness};

pub fn serve(addr: SocketAddr, registry: Registry, readiness: Readiness) -> anyhow::Result<Server> {
    let server = HttpServer::new(move || {
        let registry = registry.clone();
        App::new()
            .configure(|config| health::configure(config, readiness.clone()))
            .app_data(web::Data::new(registry))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|error| anyhow::anyhow!("failed to bind the health endpoint to {addr}: {error}"))?
    .run();
    Ok(server)
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(buffer),
        Err(error) => {
            tracing::error!(%error, "failed to encode metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "failed to install the SIGTERM handler");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}
