//! Checks the Kafka features MedFlow relies on against the stack's broker (nisshi) with
//! rdkafka: topic creation through the admin API, idempotent produce with acks=all,
//! consumer-group consume and commit, and resuming from committed offsets.
//!
//! Needs a running stack (`cargo run -p medflow-cli -- stack up`). Every test uses its own
//! topic and group names, so runs never see each other's records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const KEYS: [&str; 4] = ["aggregate-a", "aggregate-b", "aggregate-c", "aggregate-d"];
const RECORDS_PER_KEY: usize = 10;

/// Short enough that a group join (about half of it on nisshi) keeps the test quick.
const SESSION_TIMEOUT_MS: &str = "6000";

/// Upper bound for consuming the expected records, including the group join.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

fn bootstrap_servers() -> String {
    let port = std::env::var("MEDFLOW_BROKER_PORT").unwrap_or_else(|_| "9092".to_owned());
    format!("127.0.0.1:{port}")
}

/// Fails fast with a clear message when no broker responds, instead of letting the admin
/// and producer calls below run into their own timeouts of up to a minute.
fn require_broker() {
    let consumer: BaseConsumer = client_config()
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("metadata client");
    if let Err(error) = consumer.fetch_metadata(None, Duration::from_secs(5)) {
        panic!(
            "no broker responds at {} ({error}); run `cargo run -p medflow-cli -- stack up`",
            bootstrap_servers()
        );
    }
}

fn unique_name(kind: &str) -> String {
    format!("medflow-compat-{kind}-{}", uuid::Uuid::new_v4().simple())
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers());
    config
}

async fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    let options =
        AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    let new_topic = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));

    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .unwrap_or_else(|error| {
            panic!("CreateTopics request failed (is `medflow stack up` running?): {error}")
        });
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0],
        Ok(topic.to_owned()),
        "CreateTopics result for {topic}"
    );
}

/// Produces `RECORDS_PER_KEY` records per key, with payload `key:sequence`, and returns
/// each record's (partition, offset) in send order.
async fn produce_records(topic: &str) -> Vec<(String, i32, i64)> {
    let producer: FutureProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("idempotent producer");

    let mut delivered = Vec::new();
    for sequence in 0..RECORDS_PER_KEY {
        for key in KEYS {
            let payload = format!("{key}:{sequence}");
            let record = FutureRecord::to(topic).key(key).payload(&payload);
            let delivery = producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(error, _)| panic!("delivery of {payload} failed: {error}"));
            delivered.push((payload, delivery.partition, delivery.offset));
        }
    }
    delivered
}

fn group_consumer(group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .create()
        .expect("group consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// A consumed record: payload, partition and offset.
type Consumed = (String, i32, i64);

/// Polls until `count` records arrived or `CONSUME_TIMEOUT` passed.
fn consume(consumer: &BaseConsumer, count: usize) -> Vec<Consumed> {
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < count && started.elapsed() < CONSUME_TIMEOUT {
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = result.expect("consume error");
        let payload =
            String::from_utf8(message.payload().expect("payload").to_vec()).expect("UTF-8 payload");
        records.push((payload, message.partition(), message.offset()));
    }
    records
}

/// Polls for `duration` and returns whatever arrives, to show that nothing more does.
fn consume_for(consumer: &BaseConsumer, duration: Duration) -> Vec<Consumed> {
    let started = Instant::now();
    let mut records = Vec::new();
    while started.elapsed() < duration {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("consume error");
            let payload = String::from_utf8(message.payload().expect("payload").to_vec())
                .expect("UTF-8 payload");
            records.push((payload, message.partition(), message.offset()));
        }
    }
    records
}

/// Commits, per partition, the offset after the last consumed record.
fn commit_consumed(
    consumer: &BaseConsumer,
    topic: &str,
    records: &[Consumed],
) -> BTreeMap<i32, i64> {
    let mut next_offsets = BTreeMap::new();
    for (_, partition, offset) in records {
        let next = next_offsets.entry(*partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in &next_offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("offset list");
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .expect("synchronous commit");
    next_offsets
}

fn committed_offsets(consumer: &BaseConsumer, topic: &str) -> BTreeMap<i32, i64> {
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("OffsetFetch");
    committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn admin_api_creates_topic_once() {
    require_broker();
    let topic = unique_name("admin");
    create_topic(&topic).await;

    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    let options =
        AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    let again = admin
        .create_topics(
            [&NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &options,
        )
        .await
        .expect("CreateTopics request");
    assert_eq!(
        again[0],
        Err((topic.clone(), RDKafkaErrorCode::TopicAlreadyExists))
    );

    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    let listed = metadata
        .topics()
        .iter()
        .find(|listed| listed.name() == topic)
        .expect("topic in metadata");
    assert_eq!(listed.error(), None);
    assert_eq!(listed.partitions().len(), PARTITIONS as usize);
}

#[tokio::test]
async fn idempotent_produce_keeps_key_order() {
    require_broker();
    let topic = unique_name("produce");
    create_topic(&topic).await;

    let delivered = produce_records(&topic).await;

    assert_eq!(delivered.len(), KEYS.len() * RECORDS_PER_KEY);
    // Records of one key go to one partition, at increasing offsets in send order.
    for key in KEYS {
        let of_key: Vec<&(String, i32, i64)> = delivered
            .iter()
            .filter(|(payload, _, _)| payload.starts_with(&format!("{key}:")))
            .collect();
        let partitions: BTreeSet<i32> = of_key.iter().map(|(_, partition, _)| *partition).collect();
        assert_eq!(partitions.len(), 1, "partitions of {key}: {partitions:?}");
        assert!(
            of_key.windows(2).all(|pair| pair[0].2 < pair[1].2),
            "offsets of {key} are not increasing: {of_key:?}"
        );
    }
    // Every partition's offsets start at 0 and have no gaps or duplicates.
    for partition in 0..PARTITIONS {
        let mut offsets: Vec<i64> = delivered
            .iter()
            .filter(|(_, p, _)| *p == partition)
            .map(|(_, _, offset)| *offset)
            .collect();
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "offsets of partition {partition}");
    }
}

#[tokio::test]
async fn consumer_group_resumes_from_commit() {
    require_broker();
    let topic = unique_name("group");
    let group = unique_name("group");
    create_topic(&topic).await;
    let delivered = produce_records(&topic).await;
    let total = delivered.len();

    // The first member consumes about half of the records and commits exactly those.
    let first = group_consumer(&group, &topic);
    let first_batch = consume(&first, total / 2);
    assert!(
        first_batch.len() >= total / 2,
        "first member received {} of {total}",
        first_batch.len()
    );
    let committed = commit_consumed(&first, &topic, &first_batch);
    assert_eq!(
        committed_offsets(&first, &topic),
        committed,
        "offsets read back after the commit"
    );
    first.unsubscribe();
    drop(first);

    // A new member of the same group starts at the committed offsets: it receives every
    // record the first member did not, and none of the ones it did.
    let second = group_consumer(&group, &topic);
    let second_batch = consume(&second, total - first_batch.len());
    let extra = consume_for(&second, Duration::from_secs(2));

    let first_payloads: BTreeSet<&str> = first_batch
        .iter()
        .map(|(payload, _, _)| payload.as_str())
        .collect();
    let second_payloads: BTreeSet<&str> = second_batch
        .iter()
        .map(|(payload, _, _)| payload.as_str())
        .collect();
    let all_payloads: BTreeSet<&str> = delivered
        .iter()
        .map(|(payload, _, _)| payload.as_str())
        .collect();
    assert_eq!(
        first_payloads.len(),
        first_batch.len(),
        "duplicates in the first batch"
    );
    assert_eq!(
        second_payloads.len(),
        second_batch.len(),
        "duplicates in the second batch"
    );
    assert!(
        first_payloads.is_disjoint(&second_payloads),
        "records consumed twice across the commit"
    );
    let union: BTreeSet<&str> = first_payloads.union(&second_payloads).copied().collect();
    assert_eq!(union, all_payloads, "records missing after resuming");
    assert!(extra.is_empty(), "records after the end: {extra:?}");

    // Within a key, the records arrive in the order they were produced.
    for key in KEYS {
        let sequences: Vec<usize> = first_batch
            .iter()
            .chain(&second_batch)
            .filter_map(|(payload, _, _)| payload.strip_prefix(&format!("{key}:")))
            .map(|sequence| sequence.parse().expect("sequence number"))
            .collect();
        let expected: Vec<usize> = (0..RECORDS_PER_KEY).collect();
        assert_eq!(sequences, expected, "order of {key}");
    }
}

/// Partition count of a topic, read by a client that never requests topic auto-creation.
fn partition_count(topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config()
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|listed| listed.name() == topic && listed.error().is_none())
        .map(|listed| listed.partitions().len())
}

#[tokio::test]
async fn produce_without_auto_create_fails() {
    require_broker();
    let topic = unique_name("missing");
    let producer: FutureProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("allow.auto.create.topics", "false")
        .set("topic.metadata.propagation.max.ms", "1000")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");

    let result = producer
        .send(
            FutureRecord::to(&topic).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await;

    // librdkafka waits topic.metadata.propagation.max.ms for the topic to appear, then
    // fails the delivery.
    let (error, _) = result.expect_err("delivery to a topic that does not exist");
    assert!(
        matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)
        ),
        "unexpected error: {error:?}"
    );
    assert_eq!(
        partition_count(&topic),
        None,
        "topic {topic} exists after the failed produce"
    );
}

#[tokio::test]
async fn producer_default_auto_creates_topic() {
    require_broker();
    // librdkafka producers allow topic auto-creation by default, and nisshi 0.7.0-pre.2
    // honours it with 4 partitions. Producers that must only write to topics created
    // through the admin API set `allow.auto.create.topics=false`.
    let topic = unique_name("auto");
    let producer: FutureProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");

    let delivery = producer
        .send(
            FutureRecord::to(&topic).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await;

    assert!(
        delivery.is_ok(),
        "delivery to an auto-created topic: {delivery:?}"
    );
    assert_eq!(partition_count(&topic), Some(4));
}
