//! The reminder service. It will consume appointment events and send reminders 24 h,
//! 2 h and 15 min ahead; for now it starts, serves health and metrics, and consumes
//! nothing.

use std::net::SocketAddr;

use clap::Parser;
use medflow_infra::{telemetry, web};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "medflow-reminder-service",
    about = "Sends appointment reminders"
)]
struct Settings {
    /// Address of the health and metrics endpoint.
    #[arg(
        long = "http-addr",
        env = "MEDFLOW_REMINDERS_HTTP_ADDR",
        default_value = "127.0.0.1:8084"
    )]
    http_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("reminder-service");
    let settings = Settings::parse();
    let server = web::ops::serve(
        settings.http_addr,
        prometheus::Registry::new(),
        web::health::Readiness::default(),
    )?;
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(addr = %settings.http_addr, "reminder service started; no consumers yet");
    let shutdown = CancellationToken::new();
    web::ops::cancel_on_signal(shutdown.clone()).await;
    handle.stop(true).await;
    tracing::info!("reminder service stopped");
    Ok(())
}
