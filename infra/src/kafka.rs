//! Kafka client configuration and topic management. Plain Kafka protocol only, so the
//! same code runs against Apache Kafka, Redpanda or the local nisshi broker.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::config::KafkaSettings;

/// Partitions of each aggregate topic. Records are keyed by aggregate id, so one
/// aggregate's events always land in one partition, in order.
pub const PARTITIONS: i32 = 3;

/// Topic carrying the events of one aggregate type.
pub fn topic_for(settings: &KafkaSettings, aggregate_type: &str) -> String {
    format!("{}{}", settings.topic_prefix, aggregate_type)
}

pub fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Topics are created explicitly (see `ensure_topics`) with a fixed partition count;
    // a broker's implicit creation would pick its own.
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("socket.keepalive.enable", "true")
        .set("allow.auto.create.topics", "false");
    config
}

/// Producer settings for at-least-once delivery without duplicates from retries.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    config
}

/// Consumer settings: offsets are stored by the application only after its own work
/// committed, and auto-commit sends just those stored offsets.
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout_ms / 3).max(100).to_string(),
        )
        .set("enable.partition.eof", "false")
        // librdkafka's default of 500 ms is how long a fetch waits at the broker when
        // nothing new arrives. A broker that does not respond early when a record
        // arrives (nisshi 0.7.0-pre.2 did not in the projection-lag benchmark) turns that wait into projection lag.
        .set("fetch.wait.max.ms", "20")
        // Small fetches, because nisshi 0.7.0-pre.2 (storage engine sqlite) stopped
        // responding to a consumer a few thousand records behind that fetched with
        // librdkafka's default of 1 MiB per partition, and spun a core until restarted.
        .set("max.partition.fetch.bytes", "65536");
    config
}

/// Creates the topics that do not exist yet. Brokers such as nisshi create no topic on
/// demand, so every producer and consumer calls this before use.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings)
        .create()
        .context("failed to create Kafka admin client")?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .context("failed to reach the Kafka broker to create topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("failed to create Kafka topic {topic}: {code}"),
        }
    }
    Ok(())
}
