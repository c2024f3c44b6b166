//! The relay loop: poll, publish, checkpoint; retry with backoff while Kafka or
//! PostgreSQL is unavailable.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Checkpoint};
use crate::metrics::RelayMetrics;
use crate::poller;
use crate::publisher::Publisher;
use crate::RelaySettings;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const BACKLOG_REFRESH: Duration = Duration::from_secs(2);

pub struct Relay {
    settings: RelaySettings,
    pool: Pool,
    metrics: RelayMetrics,
}

impl Relay {
    pub fn new(settings: RelaySettings, pool: Pool, metrics: RelayMetrics) -> Self {
        Self {
            settings,
            pool,
            metrics,
        }
    }

    /// Runs until `shutdown` is cancelled. Only one relay per name publishes at a time:
    /// the others wait on a PostgreSQL advisory lock, which a crashed holder's
    /// connection releases. A relay whose lock connection breaks stops publishing and
    /// competes for the lock again, with the checkpoint reloaded.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut publisher = Publisher::new(&self.settings.kafka)?;
        while !shutdown.is_cancelled() {
            let Some(lock) = self.acquire_lock(&shutdown).await? else {
                break;
            };
            self.publish_while_locked(&lock, &mut publisher, &shutdown)
                .await?;
        }
        publisher.flush();
        tracing::info!(relay = %self.settings.name, "relay stopped");
        Ok(())
    }

    async fn publish_while_locked(
        &self,
        lock: &deadpool_postgres::Object,
        publisher: &mut Publisher,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut position = self.load_checkpoint(shutdown).await?;
        tracing::info!(
            relay = %self.settings.name,
            transaction_id = position.transaction_id,
            global_position = position.global_position,
            "relay publishing"
        );
        let mut backoff = Duration::from_millis(100);
        let mut backlog_checked = Instant::now() - BACKLOG_REFRESH;
        let poll_interval = Duration::from_millis(self.settings.poll_interval_ms);

        while !shutdown.is_cancelled() {
            if lock.is_closed() {
                tracing::warn!(relay = %self.settings.name, "relay lost its lock connection; acquiring the lock again");
                return Ok(());
            }
            match self
                .step(publisher, &mut position, &mut backlog_checked)
                .await
            {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    sleep_or_cancel(poll_interval, shutdown).await;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(error) => {
                    self.metrics.failures.inc();
                    tracing::warn!(
                        relay = %self.settings.name,
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "relay batch failed; retrying"
                    );
                    sleep_or_cancel(backoff, shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        Ok(())
    }

    /// Publishes one batch; returns how many events it carried.
    async fn step(
        &self,
        publisher: &mut Publisher,
        position: &mut Checkpoint,
        backlog_checked: &mut Instant,
    ) -> anyhow::Result<usize> {
        let client = self.pool.get().await?;
        if backlog_checked.elapsed() >= BACKLOG_REFRESH {
            self.metrics
                .backlog
                .set(poller::backlog(&client, *position).await?);
            *backlog_checked = Instant::now();
        }
        let batch = poller::next_batch(&client, *position, self.settings.batch_size).await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        publisher.publish(&batch).await?;
        let next = Checkpoint {
            transaction_id: last.transaction_id,
            global_position: last.global_position,
        };
        checkpoint::save(&client, &self.settings.name, next).await?;
        *position = next;
        self.metrics.published.inc_by(batch.len() as u64);
        self.metrics.checkpoint_position.set(next.global_position);
        self.metrics.backlog.sub(batch.len() as i64);
        tracing::debug!(relay = %self.settings.name, events = batch.len(), global_position = next.global_position, "batch published");
        Ok(batch.len())
    }

    async fn acquire_lock(
        &self,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<deadpool_postgres::Object>> {
        let mut waiting_logged = false;
        loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            match self.try_lock().await {
                Ok(Some(client)) => return Ok(Some(client)),
                Ok(None) if !waiting_logged => {
                    tracing::info!(relay = %self.settings.name, "relay lock is taken by another relay; waiting");
                    waiting_logged = true;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(relay = %self.settings.name, error = format!("{error:#}"), "relay lock attempt failed; retrying")
                }
            }
            sleep_or_cancel(Duration::from_secs(1), shutdown).await;
        }
    }

    async fn try_lock(&self) -> anyhow::Result<Option<deadpool_postgres::Object>> {
        let client = self.pool.get().await?;
        let key = format!("medflow-relay:{}", self.settings.name);
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await?;
        // The session lock lives as long as this connection. The caller keeps the pooled
        // object for the relay's lifetime, so the pool never hands it to other work.
        Ok(row.get::<_, bool>(0).then_some(client))
    }

    async fn load_checkpoint(&self, shutdown: &CancellationToken) -> anyhow::Result<Checkpoint> {
        loop {
            let attempt = async {
                let client = self.pool.get().await?;
                Ok::<_, anyhow::Error>(checkpoint::load(&client, &self.settings.name).await?)
            };
            match attempt.await {
                Ok(position) => return Ok(position),
                Err(error) if !shutdown.is_cancelled() => {
                    tracing::warn!(relay = %self.settings.name, error = format!("{error:#}"), "loading the relay checkpoint failed; retrying");
                    sleep_or_cancel(Duration::from_secs(1), shutdown).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.cancelled() => {}
    }
}
