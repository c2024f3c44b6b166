//! Runs one projection as a Kafka consumer group member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::FutureExt;
use medflow_infra::config::KafkaSettings;
use medflow_infra::events::StoredEvent;
use medflow_infra::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::ClientContext;
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

use super::metrics::ProjectorMetrics;
use super::progress::{ProgressBoard, Sample};
use super::{apply_events, Applied, Projection};

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const LAG_REFRESH: Duration = Duration::from_secs(5);
/// Maximum number of messages applied in one read-model transaction. Under load a batch
/// takes what has already arrived, so one commit serves many events. A batch never
/// waits for more messages.
const MAX_BATCH: usize = 256;

/// Consumer group of a projection.
pub fn group_id(settings: &KafkaSettings, projection: &str) -> String {
    format!("{}projection.{projection}", settings.topic_prefix)
}

/// Consumes the projection's topics until `shutdown` is cancelled. A message's offset
/// is stored for commit only after its read-model transaction committed; an apply
/// that fails for a database reason is retried (with backoff) until it succeeds.
pub async fn run(
    projection: Arc<dyn Projection>,
    pool: Pool,
    settings: KafkaSettings,
    metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let name = projection.name();
    metrics.export_zero(name);
    metrics.progress.starting(name, Instant::now());
    let topics: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|aggregate_type| kafka::topic_for(&settings, aggregate_type))
        .collect();
    wait_for_topics(&settings, &topics, &shutdown).await;
    let context = GroupContext {
        projection: name,
        progress: metrics.progress.clone(),
    };
    let consumer: Arc<StreamConsumer<GroupContext>> = Arc::new(
        kafka::consumer_config(&settings, &group_id(&settings, name))
            .create_with_context(context)?,
    );
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    tracing::info!(projection = name, topics = ?topics, "projector started");

    let lag_task = tokio::spawn(report_lag(
        Arc::clone(&consumer),
        name,
        metrics.clone(),
        shutdown.clone(),
    ));
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        let first = match first {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(projection = name, %error, "Kafka receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Messages that already arrived join the batch. None is waited for.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    tracing::warn!(projection = name, %error, "Kafka receive failed");
                    break;
                }
                None => break,
            }
        }
        if !handle(&*projection, &pool, &batch, &metrics, &shutdown).await {
            break;
        }
        for message in &batch {
            if let Err(error) = consumer.store_offset_from_message(message) {
                tracing::warn!(projection = name, %error, "storing the consumer offset failed");
            }
        }
    }
    lag_task.abort();
    // Commit what was stored before leaving the group, so a restart resumes exactly here.
    if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::debug!(projection = name, %error, "final offset commit skipped");
    }
    tracing::info!(projection = name, "projector stopped");
    Ok(())
}

/// Decodes a message, or returns `None` (logged and counted) for a record that can
/// never apply.
fn decode(
    name: &str,
    message: &BorrowedMessage<'_>,
    metrics: &ProjectorMetrics,
) -> Option<StoredEvent> {
    let decoded = match message.payload() {
        None => Err("empty payload".to_owned()),
        Some(payload) => serde_json::from_slice::<StoredEvent>(payload)
            .map(StoredEvent::upcast)
            .map_err(|error| error.to_string()),
    };
    match decoded {
        Ok(event) => Some(event),
        Err(reason) => {
            // Retrying would stall the partition forever, so it is logged and skipped.
            metrics.failures.with_label_values(&[name]).inc();
            tracing::error!(
                projection = name,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                reason,
                "undecodable record skipped"
            );
            None
        }
    }
}

/// Applies a batch of messages in one transaction. If that fails, the events are
/// applied one by one, each retried with backoff until it succeeds, so the events
/// before a failing one are not held back with it. Returns false only when shutdown
/// interrupted the retries.
async fn handle(
    projection: &dyn Projection,
    pool: &Pool,
    batch: &[BorrowedMessage<'_>],
    metrics: &ProjectorMetrics,
    shutdown: &CancellationToken,
) -> bool {
    let name = projection.name();
    let events: Vec<StoredEvent> = batch
        .iter()
        .filter_map(|message| decode(name, message, metrics))
        .collect();
    if events.len() > 1 {
        match apply_once(projection, pool, &events).await {
            Ok(outcomes) => {
                count(metrics, name, &outcomes);
                return true;
            }
            Err(error) => {
                metrics.failures.with_label_values(&[name]).inc();
                tracing::warn!(
                    projection = name,
                    events = events.len(),
                    error = format!("{error:#}"),
                    "applying a batch failed; applying its events one by one"
                );
            }
        }
    }
    for event in &events {
        if !apply_retrying(projection, pool, event, metrics, shutdown).await {
            return false;
        }
    }
    true
}

async fn apply_once(
    projection: &dyn Projection,
    pool: &Pool,
    events: &[StoredEvent],
) -> anyhow::Result<Vec<Applied>> {
    let mut client = pool.get().await?;
    let statements = Arc::clone(&client.statement_cache);
    apply_events(&mut client, Some(&statements), projection, events).await
}

/// Applies one event, retrying with backoff until it succeeds. Returns false only when
/// shutdown interrupted the retries.
async fn apply_retrying(
    projection: &dyn Projection,
    pool: &Pool,
    event: &StoredEvent,
    metrics: &ProjectorMetrics,
    shutdown: &CancellationToken,
) -> bool {
    let name = projection.name();
    let mut backoff = Duration::from_millis(100);
    loop {
        match apply_once(projection, pool, std::slice::from_ref(event)).await {
            Ok(outcomes) => {
                count(metrics, name, &outcomes);
                return true;
            }
            Err(error) => {
                metrics.failures.with_label_values(&[name]).inc();
                tracing::warn!(projection = name, aggregate_id = %event.aggregate_id, sequence = event.sequence, error = format!("{error:#}"), "applying event failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn count(metrics: &ProjectorMetrics, name: &str, outcomes: &[Applied]) {
    for outcome in outcomes {
        let counter = match outcome {
            Applied::Applied => &metrics.applied,
            Applied::Duplicate => &metrics.duplicates,
        };
        counter.with_label_values(&[name]).inc();
    }
}

async fn wait_for_topics(
    settings: &KafkaSettings,
    topics: &[String],
    shutdown: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match kafka::ensure_topics(settings, topics).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Kafka topics unavailable; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Consumer context that marks the consumer as joined on its first assignment.
struct GroupContext {
    projection: &'static str,
    progress: ProgressBoard,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(
                projection = self.projection,
                partitions = partitions.count(),
                "consumer group joined"
            );
            self.progress.joined(self.projection);
        }
    }
}

async fn report_lag(
    consumer: Arc<StreamConsumer<GroupContext>>,
    name: &'static str,
    metrics: ProjectorMetrics,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let consumer = Arc::clone(&consumer);
        let lags = tokio::task::spawn_blocking(move || partition_lags(&consumer)).await;
        // A failed measurement records nothing, so a stall that has begun keeps counting
        // while the broker connection is wedged.
        let lags = match lags {
            Ok(Ok(lags)) => Some(lags),
            Ok(Err(error)) => {
                tracing::warn!(
                    projection = name,
                    error = format!("{error:#}"),
                    "measuring consumer lag failed"
                );
                None
            }
            Err(error) => {
                tracing::warn!(projection = name, %error, "lag measurement task failed");
                None
            }
        };
        if let Some(lags) = lags {
            let mut sample = Sample {
                lag: 0,
                committed: 0,
            };
            for lag in &lags {
                metrics
                    .lag
                    .with_label_values(&[name, &lag.topic, &lag.partition.to_string()])
                    .set(lag.behind);
                sample.lag += lag.behind;
                sample.committed += lag.committed;
            }
            let stalled = metrics.progress.record(name, sample, Instant::now());
            metrics
                .stalled
                .with_label_values(&[name])
                .set(i64::try_from(stalled.as_secs()).unwrap_or(i64::MAX));
        }
        tokio::time::sleep(LAG_REFRESH).await;
    }
}

/// One assigned partition of a consumer.
struct PartitionLag {
    topic: String,
    partition: i32,
    /// Committed offset, 0 before the first commit.
    committed: i64,
    /// Messages from the committed offset to the high watermark.
    behind: i64,
}

fn partition_lags(consumer: &StreamConsumer<GroupContext>) -> anyhow::Result<Vec<PartitionLag>> {
    let assignment = consumer.assignment()?;
    let committed = consumer.committed_offsets(assignment, Duration::from_secs(2))?;
    let mut lags = Vec::new();
    for element in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(
            element.topic(),
            element.partition(),
            Duration::from_secs(2),
        )?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        };
        lags.push(PartitionLag {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed: position,
            behind: (high - position).max(0),
        });
    }
    Ok(lags)
}
