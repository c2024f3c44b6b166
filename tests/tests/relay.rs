//! The relay: no event skipped behind a slow transaction, crash safety, broker outages.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use medflow_tests::api::unique_email;
use medflow_tests::broker::DedicatedBroker;
use medflow_tests::kafka::{read_topic, Record};
use medflow_tests::process::ServiceProcess;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use reqwest::StatusCode;

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
     VALUES ('account', $1, $2, 'AccountReinstated', '1', '{}', '{\"request_id\": \"test\"}')";

fn topic(env: &TestEnv) -> String {
    format!("{}account", env.topic_prefix)
}

#[tokio::test]
async fn event_of_slow_transaction_is_relayed_in_order() {
    let env = TestEnv::new().await;
    let mut slow = env.app_client().await;
    let fast = env.app_client().await;

    // The slow transaction takes the lowest position and stays open while two faster
    // ones insert behind it and commit.
    let slow_transaction = slow.transaction().await.unwrap();
    slow_transaction
        .execute(INSERT_EVENT, &[&"slow", &1i64])
        .await
        .unwrap();
    fast.execute(INSERT_EVENT, &[&"fast-1", &1i64])
        .await
        .unwrap();
    fast.execute(INSERT_EVENT, &[&"fast-2", &1i64])
        .await
        .unwrap();
    env.start_relay();

    // Nothing after the open transaction may be published yet: a relay that moved past
    // the fast rows would have no way back to the slow one.
    let early = read_topic(&env.brokers, &topic(&env), 1, Duration::from_secs(3)).await;
    assert!(
        early.is_empty(),
        "published ahead of an open transaction: {early:?}"
    );

    slow_transaction.commit().await.unwrap();
    let records = read_topic(&env.brokers, &topic(&env), 3, Duration::from_secs(20)).await;
    let ids: Vec<&str> = records.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(records.len(), 3, "records {ids:?}");
    let positions: BTreeMap<&str, i64> = records
        .iter()
        .map(|record| (record.key.as_str(), record.event.global_position))
        .collect();
    assert!(positions["slow"] < positions["fast-1"]);
    assert!(positions["fast-1"] < positions["fast-2"]);
    for record in &records {
        assert_eq!(record.headers["event_type"], "AccountReinstated");
        assert_eq!(record.headers["event_version"], "1");
        assert_eq!(record.headers["sequence"], "1");
        assert_eq!(
            record.headers["global_position"],
            record.event.global_position.to_string()
        );
        assert_eq!(record.headers["aggregate_type"], "account");
    }
}

#[tokio::test]
async fn earlier_transaction_inserting_last_is_relayed() {
    let env = TestEnv::new().await;
    let mut early = env.app_client().await;
    let late = env.app_client().await;

    // The first transaction gets its id before the second one exists but inserts after
    // it, so transaction order and position order disagree.
    let first = early.transaction().await.unwrap();
    first
        .execute("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap();
    late.execute(INSERT_EVENT, &[&"second", &1i64])
        .await
        .unwrap();
    first
        .execute(INSERT_EVENT, &[&"first", &1i64])
        .await
        .unwrap();
    env.start_relay();
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.commit().await.unwrap();

    let records = read_topic(&env.brokers, &topic(&env), 2, Duration::from_secs(20)).await;
    let keys: HashSet<&str> = records.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(keys, HashSet::from(["first", "second"]));
}

/// Checks that every event in the table appears on the topic and that each
/// aggregate's events first appear in sequence order.
async fn assert_topic_matches_table(env: &TestEnv, records: &[Record]) {
    let client = env.owner_client().await;
    let rows = client
        .query("SELECT aggregate_id, sequence FROM events", &[])
        .await
        .unwrap();
    let table: HashSet<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let published: HashSet<(String, i64)> = records
        .iter()
        .map(|record| (record.event.aggregate_id.clone(), record.event.sequence))
        .collect();
    let missing: Vec<_> = table.difference(&published).collect();
    assert!(
        missing.is_empty(),
        "{} events never published, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    let mut ordered = records.to_vec();
    ordered.sort_by_key(|record| (record.partition, record.offset));
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    for record in ordered {
        let seen = highest
            .entry(record.event.aggregate_id.clone())
            .or_insert(0);
        // A redelivered batch may repeat old sequences, but a new one is always next.
        assert!(
            record.event.sequence <= *seen + 1,
            "sequence gap for {}: {} after {}",
            record.event.aggregate_id,
            record.event.sequence,
            seen
        );
        *seen = (*seen).max(record.event.sequence);
    }
}

#[tokio::test]
async fn relay_killed_mid_stream_loses_nothing() {
    let env = TestEnv::new().await;
    let relay_args = ["--http-addr", "127.0.0.1:0"];
    let mut relay = ServiceProcess::spawn("medflow-relay", &relay_args, &env.env_vars());
    let writer_env_url = env.app_url();
    let writer = tokio::spawn(async move {
        let mut client = medflow_tests::database::connect(&writer_env_url).await;
        for batch in 0..60 {
            let transaction = client.transaction().await.unwrap();
            for aggregate in 0..10 {
                let id = format!("aggregate-{aggregate}");
                transaction
                    .execute(INSERT_EVENT, &[&id, &(batch + 1i64)])
                    .await
                    .unwrap();
            }
            transaction.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });

    let checkpoint_client = env.owner_client().await;
    eventually(
        Duration::from_secs(30),
        "a first relay checkpoint",
        || async {
            let row = checkpoint_client
                .query_opt("SELECT global_position FROM relay_checkpoints", &[])
                .await
                .unwrap();
            row.map(|row| row.get::<_, i64>(0))
                .filter(|position| *position > 0)
        },
    )
    .await;
    relay.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut relay = ServiceProcess::spawn("medflow-relay", &relay_args, &env.env_vars());
    writer.await.unwrap();

    // Redelivered records count too, so read until 600 distinct events are there.
    let brokers = env.brokers.clone();
    let topic = topic(&env);
    let records = eventually(
        Duration::from_secs(60),
        "600 distinct events on the topic",
        || {
            let (brokers, topic) = (brokers.clone(), topic.clone());
            async move {
                let records =
                    read_topic(&brokers, &topic, usize::MAX, Duration::from_secs(3)).await;
                let distinct: HashSet<(String, i64)> = records
                    .iter()
                    .map(|record| (record.event.aggregate_id.clone(), record.event.sequence))
                    .collect();
                (distinct.len() >= 600).then_some(records)
            }
        },
    )
    .await;
    assert!(relay.is_running());
    assert_topic_matches_table(&env, &records).await;
}

#[tokio::test]
async fn registrations_continue_while_broker_is_down() {
    let mut broker = DedicatedBroker::start().await;
    let env = TestEnv::new().await.with_brokers(&broker.brokers());
    let api = env.start_spine().await;
    let before = unique_email("before");
    let (_, sequence) = api.register_ok("patient", &before, "Before Outage").await;
    let login = api.login_ok(&before).await;
    assert_eq!(
        api.me(&login.token, Some(sequence)).await.status(),
        StatusCode::OK
    );

    broker.stop();
    let during = unique_email("during");
    let (_, sequence) = api.register_ok("doctor", &during, "During Outage").await;
    let login = api.login_ok(&during).await;

    broker.resume().await;
    let status = eventually(
        Duration::from_secs(60),
        "the projection to catch up after the outage",
        || {
            let api = api.clone();
            let token = login.token.clone();
            async move {
                let status = api.me(&token, Some(sequence)).await.status();
                (status == StatusCode::OK).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Consumers leave their groups while this test's broker still runs.
    env.stop_services().await;
}

#[tokio::test]
async fn standby_relay_takes_over_after_kill() {
    let env = TestEnv::new().await;
    let args = ["--http-addr", "127.0.0.1:0"];
    let mut active = ServiceProcess::spawn("medflow-relay", &args, &env.env_vars());
    let client = env.app_client().await;
    client
        .execute(INSERT_EVENT, &[&"before", &1i64])
        .await
        .unwrap();
    let first = read_topic(&env.brokers, &topic(&env), 1, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 1);

    // The standby waits on the lock the active relay holds.
    let _standby = ServiceProcess::spawn("medflow-relay", &args, &env.env_vars());
    tokio::time::sleep(Duration::from_millis(500)).await;
    active.kill9();
    client
        .execute(INSERT_EVENT, &[&"after", &1i64])
        .await
        .unwrap();
    let (brokers, topic) = (env.brokers.clone(), topic(&env));
    eventually(
        Duration::from_secs(30),
        "the standby relay to publish",
        || {
            let (brokers, topic) = (brokers.clone(), topic.clone());
            async move {
                let records =
                    read_topic(&brokers, &topic, usize::MAX, Duration::from_secs(2)).await;
                records
                    .iter()
                    .any(|record| record.key == "after")
                    .then_some(())
            }
        },
    )
    .await;
}
