//! Reads a topic from the beginning without joining a consumer group, so tests see
//! exactly what the relay published, duplicates included.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use medflow_infra::events::StoredEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A record as consumed: partition, offset, headers and the decoded event.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: HashMap<String, String>,
    pub event: StoredEvent,
}

/// Returns every record of `topic` once at least `expected` are there, or whatever
/// arrived when `timeout` ran out.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, expected, timeout))
        .await
        .expect("topic reader")
}

fn read_blocking(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let started = Instant::now();
    let partitions = loop {
        let found = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()
            .and_then(|metadata| metadata.topics().first().map(|t| t.partitions().len()))
            .unwrap_or(0);
        if found > 0 {
            break found;
        }
        if started.elapsed() > timeout {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    while records.len() < expected && started.elapsed() < timeout {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(message) = result else {
            continue;
        };
        let mut headers = HashMap::new();
        if let Some(list) = message.headers() {
            for header in list.iter() {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(header.key.to_owned(), value);
            }
        }
        let payload = message.payload().expect("record payload");
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            event: serde_json::from_slice(payload).expect("record is a StoredEvent"),
        });
    }
    records
}
