use clap::Parser;
use medflow_infra::{db, telemetry, web};
use medflow_relay::metrics::RelayMetrics;
use medflow_relay::{Relay, RelaySettings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("relay");
    let settings = RelaySettings::parse();
    // One connection stays reserved for the relay's advisory lock, so the pool needs a
    // second one for the work itself and a third for the audit sealer.
    let pool = db::pg_pool(&settings.database.url, settings.database.pool_size.max(3))?;
    let registry = prometheus::Registry::new();
    let metrics = RelayMetrics::register(&registry)?;
    let readiness = web::health::Readiness::default()
        .with("postgres", web::health::postgres_check(pool.clone()))
        .with("kafka", web::health::kafka_check(settings.kafka.clone()));
    let server = web::ops::serve(settings.http_addr, registry, readiness)?;
    let server_handle = server.handle();
    tracing::info!(addr = %settings.http_addr, "relay health and metrics endpoint listening");
    tokio::spawn(server);

    let shutdown = CancellationToken::new();
    tokio::spawn(web::ops::cancel_on_signal(shutdown.clone()));
    let sealer = tokio::spawn(medflow_relay::sealer::run(
        settings.audit.clone(),
        pool.clone(),
        shutdown.clone(),
    ));
    Relay::new(settings, pool, metrics).run(shutdown).await?;
    let _ = sealer.await;
    server_handle.stop(true).await;
    Ok(())
}
