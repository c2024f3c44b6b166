//! The reminder service. It keeps a durable schedule of reminders (24 h, 2 h and 15 min
//! before each appointment) from appointment events on Kafka. It sends each one by
//! e-mail and as an in-app notification, once per appointment time and offset, except
//! for the crash window described in [`sender`].

pub mod mail;
pub mod metrics;
pub mod schedule;
pub mod sender;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use medflow_infra::clock::SharedClock;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_projectors::framework;
use medflow_projectors::framework::metrics::ProjectorMetrics;
use tokio_util::sync::CancellationToken;

pub use settings::ReminderSettings;

/// How often the pending gauge is refreshed.
const PENDING_REFRESH: Duration = Duration::from_secs(5);

/// Runs the schedule consumer and the sender workers until `shutdown` is cancelled.
/// `consumer_metrics` are the schedule consumer's lag and stall metrics, registered by
/// the caller so that its readiness check can watch them.
pub async fn run(
    settings: ReminderSettings,
    pool: Pool,
    clock: SharedClock,
    registry: &prometheus::Registry,
    consumer_metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let masters = MasterKeys::parse(&settings.keys.master_keys).map_err(anyhow::Error::msg)?;
    let mailer = mail::Mailer::new(
        &settings.smtp_url,
        &settings.mail_from,
        &settings.frontend_base_url,
    )?;
    let sender = Arc::new(sender::Sender {
        pool: pool.clone(),
        clock: clock.clone(),
        mailer,
        keys: KeyRing::new(pool.clone(), masters),
        metrics: metrics::ReminderMetrics::register(registry)?,
        poll_interval: Duration::from_millis(settings.poll_interval_ms),
        abort_after_smtp: settings.abort_after_smtp,
    });
    let consumer = tokio::spawn(framework::run(
        Arc::new(schedule::ReminderSchedule { clock }),
        pool,
        settings.kafka.clone(),
        consumer_metrics,
        shutdown.clone(),
    ));
    let mut workers = Vec::new();
    for worker in 0..settings.workers.max(1) {
        workers.push(tokio::spawn(
            Arc::clone(&sender).run_worker(worker, shutdown.clone()),
        ));
    }
    let gauge = {
        let sender = Arc::clone(&sender);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(error) = sender.refresh_pending().await {
                    tracing::warn!(error = %format!("{error:#}"), "refreshing the pending reminder count failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(PENDING_REFRESH) => {}
                }
            }
        })
    };
    tracing::info!(workers = settings.workers, "reminder service running");
    for worker in workers {
        worker.await?;
    }
    gauge.await?;
    consumer.await??;
    Ok(())
}
