use chrono::TimeDelta;
use clap::Parser;
use medflow_infra::clock::{self, SharedClock, ShiftedClock};
use medflow_infra::{db, telemetry, web};
use medflow_projectors::framework::metrics::ProjectorMetrics;
use medflow_reminder_service::ReminderSettings;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("reminder-service");
    let settings = ReminderSettings::parse();
    let pool = db::pg_pool(&settings.database.url, settings.database.pool_size)?;
    let clock: SharedClock = if settings.clock_offset_secs == 0 && settings.clock_speed == 1.0 {
        clock::system_clock()
    } else {
        tracing::warn!(
            offset_secs = settings.clock_offset_secs,
            speed = settings.clock_speed,
            "the reminder service runs on a shifted clock"
        );
        ShiftedClock::new(
            TimeDelta::seconds(settings.clock_offset_secs),
            settings.clock_speed,
        )
    };

    let registry = prometheus::Registry::new();
    let consumer_metrics = ProjectorMetrics::register(&registry)?;
    let readiness = web::health::Readiness::default()
        .with("postgres", web::health::postgres_check(pool.clone()))
        .with("kafka", web::health::kafka_check(settings.kafka.clone()))
        .with(
            "consumer",
            consumer_metrics
                .progress
                .readiness_check(settings.stall.limit()),
        );
    let server = web::ops::serve(settings.http_addr, registry.clone(), readiness)?;
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(addr = %settings.http_addr, "reminder service health and metrics endpoint listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(web::ops::cancel_on_signal(shutdown.clone()));
    let result =
        medflow_reminder_service::run(settings, pool, clock, &registry, consumer_metrics, shutdown)
            .await;
    handle.stop(true).await;
    tracing::info!("reminder service stopped");
    result
}
