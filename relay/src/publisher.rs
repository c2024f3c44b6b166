//! Publishes a batch of events to Kafka and waits until every record is acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::try_join_all;
use medflow_infra::config::KafkaSettings;
use medflow_infra::events::{headers, StoredEvent};
use medflow_infra::kafka;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

pub struct Publisher {
    producer: FutureProducer,
    settings: KafkaSettings,
    known_topics: HashSet<String>,
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<Self> {
        let producer = kafka::producer_config(settings)
            // The same key-to-partition mapping as the Java client, so other producers
            // and consumers agree on where an aggregate's events live.
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self {
            producer,
            settings: settings.clone(),
            known_topics: HashSet::new(),
        })
    }

    /// Sends every event and returns once all are acknowledged, or the first failure.
    /// Records are enqueued in batch order, and the idempotent producer keeps that order
    /// within each partition across retries.
    pub async fn publish(&mut self, events: &[StoredEvent]) -> anyhow::Result<()> {
        let missing: Vec<String> = events
            .iter()
            .map(|event| kafka::topic_for(&self.settings, &event.aggregate_type))
            .filter(|topic| !self.known_topics.contains(topic))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            kafka::ensure_topics(&self.settings, &missing).await?;
            self.known_topics.extend(missing);
        }

        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let topic = kafka::topic_for(&self.settings, &event.aggregate_type);
            let payload = serde_json::to_vec(event)?;
            let sequence = event.sequence.to_string();
            let position = event.global_position.to_string();
            let record_headers = OwnedHeaders::new()
                .insert(Header {
                    key: headers::AGGREGATE_TYPE,
                    value: Some(event.aggregate_type.as_str()),
                })
                .insert(Header {
                    key: headers::EVENT_TYPE,
                    value: Some(event.event_type.as_str()),
                })
                .insert(Header {
                    key: headers::EVENT_VERSION,
                    value: Some(event.event_version.as_str()),
                })
                .insert(Header {
                    key: headers::SEQUENCE,
                    value: Some(sequence.as_str()),
                })
                .insert(Header {
                    key: headers::GLOBAL_POSITION,
                    value: Some(position.as_str()),
                });
            let record = FutureRecord::to(&topic)
                .key(event.aggregate_id.as_bytes())
                .payload(&payload)
                .headers(record_headers);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(error, _)| anyhow::anyhow!("failed to enqueue record: {error}"))?;
            deliveries.push(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(anyhow::anyhow!("Kafka rejected a record: {error}")),
                    Err(_) => Err(anyhow::anyhow!("delivery report channel closed")),
                }
            });
        }
        try_join_all(deliveries).await?;
        Ok(())
    }

    /// Waits for outstanding deliveries before shutdown.
    pub fn flush(&self) {
        use rdkafka::producer::Producer;
        if let Err(error) = self.producer.flush(Timeout::After(Duration::from_secs(5))) {
            tracing::warn!(%error, "relay producer flush failed at shutdown");
        }
    }
}
