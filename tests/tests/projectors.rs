//! Projectors: crash safety, idempotency, gap filling and rebuilds.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::AggregateError;
use medflow_domain::account::{Account, AccountCommand, RegisterAccount};
use medflow_domain::values::{AccountId, EmailIndex, Role, SealedValue};
use medflow_infra::event_store::{CommandBus, EventMetadata};
use medflow_infra::events::{StoredEvent, STORED_EVENT_COLUMNS};
use medflow_projectors::framework::Projection;
use medflow_projectors::framework::{apply_event, apply_events, rebuild, Applied};
use medflow_projectors::projections::accounts::AccountsProjection;
use medflow_tests::database;
use medflow_tests::process::ServiceProcess;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use secrecy::SecretString;
use uuid::Uuid;

fn sealed(tag: &str) -> SealedValue {
    SealedValue {
        key_id: Uuid::nil(),
        nonce: tag.into(),
        ciphertext: tag.into(),
    }
}

fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: "projector-test".into(),
        session_id: None,
    }
}

async fn command_bus(env: &TestEnv) -> CommandBus<Account> {
    let pool = medflow_infra::db::sqlx_pool(&SecretString::from(env.app_url()), 4)
        .await
        .unwrap();
    CommandBus::new(pool, ())
}

/// Writes `count` accounts, each registered, suspended, reinstated and suspended again.
async fn write_account_histories(bus: &CommandBus<Account>, count: u128) -> Vec<AccountId> {
    let admin = AccountId(Uuid::from_u128(u128::MAX));
    let mut ids = Vec::new();
    for index in 0..count {
        let account_id = AccountId(Uuid::from_u128(index + 1));
        let id = account_id.to_string();
        let registration = RegisterAccount {
            account_id,
            role: if index % 2 == 0 {
                Role::Patient
            } else {
                Role::Doctor
            },
            email_index: EmailIndex(format!("{index:064x}")),
            email: sealed("email"),
            name: sealed("name"),
            password_hash: sealed("hash"),
            registered_by: None,
        };
        bus.execute(&id, AccountCommand::Register(registration), metadata())
            .await
            .unwrap();
        bus.execute(
            &id,
            AccountCommand::Suspend {
                reason: sealed("r"),
                by: admin,
            },
            metadata(),
        )
        .await
        .unwrap();
        bus.execute(&id, AccountCommand::Reinstate { by: admin }, metadata())
            .await
            .unwrap();
        bus.execute(
            &id,
            AccountCommand::Suspend {
                reason: sealed("r"),
                by: admin,
            },
            metadata(),
        )
        .await
        .unwrap();
        ids.push(account_id);
    }
    ids
}

/// Reads the whole read model and its offsets as comparable text.
async fn snapshot(env: &TestEnv) -> (Vec<String>, Vec<String>) {
    let client = env.owner_client().await;
    let directory = client
        .query(
            "SELECT row_to_json(d)::text FROM account_directory d ORDER BY account_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let offsets = client
        .query(
            "SELECT aggregate_id || ':' || last_sequence FROM projection_offsets WHERE projection = 'accounts' ORDER BY aggregate_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    (directory, offsets)
}

#[tokio::test]
async fn projector_killed_mid_stream_equals_rebuild() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let writer = tokio::spawn(async move { write_account_histories(&bus, 80).await });
    env.start_relay();
    let projector_args = ["--http-addr", "127.0.0.1:0"];
    let mut projector =
        ServiceProcess::spawn("medflow-projectors", &projector_args, &env.env_vars());

    let client = env.owner_client().await;
    eventually(
        Duration::from_secs(60),
        "the projector to apply some events",
        || async {
            let row = client
                .query_one("SELECT count(*) FROM projection_offsets", &[])
                .await
                .unwrap();
            (row.get::<_, i64>(0) >= 5).then_some(())
        },
    )
    .await;
    projector.kill9();
    let ids = writer.await.unwrap();
    let _projector = ServiceProcess::spawn("medflow-projectors", &projector_args, &env.env_vars());

    eventually(Duration::from_secs(90), "every account projected to sequence 4", || async {
        let row = client
            .query_one("SELECT count(*) FROM projection_offsets WHERE projection = 'accounts' AND last_sequence = 4", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0) == ids.len() as i64).then_some(())
    })
    .await;
    let live = snapshot(&env).await;
    assert_eq!(live.0.len(), ids.len());
    assert!(
        live.0
            .iter()
            .all(|row| row.contains(r#""status":"suspended""#)),
        "{:?}",
        live.0.first()
    );

    let rebuild = ServiceProcess::run_to_end(
        "medflow-projectors",
        &["rebuild", "accounts"],
        &env.env_vars(),
    );
    assert!(
        rebuild.contains("rebuilt projection accounts from 320 events"),
        "{rebuild}"
    );
    let rebuilt = snapshot(&env).await;
    assert_eq!(
        live, rebuilt,
        "rebuilt read model differs from the live one"
    );
}

async fn stored_events(env: &TestEnv, aggregate_id: &AccountId) -> Vec<StoredEvent> {
    let client = env.owner_client().await;
    client
        .query(
            &format!("SELECT {STORED_EVENT_COLUMNS} FROM events WHERE aggregate_id = $1 ORDER BY sequence"),
            &[&aggregate_id.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| StoredEvent::from_row(row).unwrap())
        .collect()
}

#[tokio::test]
async fn redelivered_event_changes_nothing() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let ids = write_account_histories(&bus, 1).await;
    let events = stored_events(&env, &ids[0]).await;
    let mut client = env.app_client().await;
    for event in &events {
        assert_eq!(
            apply_event(&mut client, None, &AccountsProjection, event)
                .await
                .unwrap(),
            Applied::Applied
        );
    }
    let before = snapshot(&env).await;
    for event in events.iter().rev() {
        assert_eq!(
            apply_event(&mut client, None, &AccountsProjection, event)
                .await
                .unwrap(),
            Applied::Duplicate
        );
    }
    assert_eq!(snapshot(&env).await, before);
}

/// The live projector's path: one transaction for a batch with several events of each
/// aggregate, on a pooled connection with prepared statements. Applying the same batch
/// again, as a redelivery would, changes nothing.
#[tokio::test]
async fn batch_applies_each_event_once() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let ids = write_account_histories(&bus, 3).await;
    let mut events = Vec::new();
    for id in &ids {
        events.extend(stored_events(&env, id).await);
    }
    // Interleave the aggregates, as a topic partition may.
    events.sort_by_key(|event| (event.sequence, event.aggregate_id.clone()));
    let pool = medflow_infra::db::pg_pool(&SecretString::from(env.app_url()), 1).unwrap();
    let mut client = pool.get().await.unwrap();
    let statements = Arc::clone(&client.statement_cache);

    let outcomes = apply_events(&mut client, Some(&statements), &AccountsProjection, &events)
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Applied::Applied; events.len()]);
    assert!(statements.size() > 0, "the statements were not prepared");
    let applied = snapshot(&env).await;
    let expected: Vec<String> = ids.iter().map(|id| format!("{id}:4")).collect();
    assert_eq!(applied.1, expected);

    let outcomes = apply_events(&mut client, Some(&statements), &AccountsProjection, &events)
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Applied::Duplicate; events.len()]);
    assert_eq!(snapshot(&env).await, applied);
}

/// An offset row that another consumer inserted for a new aggregate while this batch
/// ran (there was no row to lock yet) is not moved back by the batch's upsert.
#[tokio::test]
async fn concurrent_offset_never_moves_back() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let ids = write_account_histories(&bus, 1).await;
    let events = stored_events(&env, &ids[0]).await;
    let mut other = env.app_client().await;
    let ahead = other.transaction().await.unwrap();
    ahead
        .execute(
            "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, updated_at) \
             VALUES ($1, 'account', $2, 4, now())",
            &[&AccountsProjection.name(), &ids[0].to_string()],
        )
        .await
        .unwrap();

    let mut client = env.app_client().await;
    let commit = async {
        database::until_a_statement_waits_for_a_lock(&env.database).await;
        ahead.commit().await.unwrap();
    };
    let (outcome, ()) = tokio::join!(
        apply_events(&mut client, None, &AccountsProjection, &events[..1]),
        commit
    );
    assert_eq!(outcome.unwrap(), vec![Applied::Applied]);
    let (_, offsets) = snapshot(&env).await;
    assert_eq!(offsets, vec![format!("{}:4", ids[0])]);
}

#[tokio::test]
async fn missing_events_are_read_from_the_store() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let ids = write_account_histories(&bus, 1).await;
    let events = stored_events(&env, &ids[0]).await;
    let mut client = env.app_client().await;
    // Only the last event arrives; the first three must be filled in from the store.
    apply_event(&mut client, None, &AccountsProjection, &events[3])
        .await
        .unwrap();
    let (directory, offsets) = snapshot(&env).await;
    assert_eq!(offsets, vec![format!("{}:4", ids[0])]);
    assert!(
        directory[0].contains(r#""status":"suspended""#),
        "{directory:?}"
    );
}

#[tokio::test]
async fn rebuild_of_empty_store_empties_the_read_model() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let ids = write_account_histories(&bus, 3).await;
    let mut client = env.app_client().await;
    let replayed = rebuild(&mut client, &AccountsProjection).await.unwrap();
    assert_eq!(replayed, 12);
    let (directory, offsets) = snapshot(&env).await;
    assert_eq!((directory.len(), offsets.len()), (ids.len(), ids.len()));
    // A second rebuild gives the same result.
    rebuild(&mut client, &AccountsProjection).await.unwrap();
    assert_eq!(snapshot(&env).await, (directory, offsets));
}

#[tokio::test]
async fn concurrent_commands_on_one_version_conflict() {
    let env = TestEnv::new().await;
    let bus = std::sync::Arc::new(command_bus(&env).await);
    let ids = write_account_histories(&bus, 1).await;
    let id = ids[0].to_string();
    let reinstate = AccountCommand::Reinstate {
        by: AccountId(Uuid::from_u128(7)),
    };
    let attempts = (0..6).map(|_| {
        let bus = std::sync::Arc::clone(&bus);
        let id = id.clone();
        let command = reinstate.clone();
        async move { bus.execute(&id, command, metadata()).await }
    });
    let results = futures::future::join_all(attempts).await;
    let succeeded = results.iter().filter(|result| result.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|result| {
            matches!(
                result,
                Err(AggregateError::AggregateConflict) | Err(AggregateError::UserError(_))
            )
        })
        .count();
    assert_eq!((succeeded, rejected), (1, 5), "{results:?}");
    assert_eq!(stored_events(&env, &ids[0]).await.len(), 5);
}

#[tokio::test]
async fn relay_and_projector_killed_still_equal_rebuild() {
    let env = TestEnv::new().await;
    let bus = command_bus(&env).await;
    let writer = tokio::spawn(async move { write_account_histories(&bus, 60).await });
    let args = ["--http-addr", "127.0.0.1:0"];
    let mut relay = ServiceProcess::spawn("medflow-relay", &args, &env.env_vars());
    let mut projector = ServiceProcess::spawn("medflow-projectors", &args, &env.env_vars());

    let client = env.owner_client().await;
    let applied = || async {
        let row = client
            .query_one("SELECT count(*) FROM projection_offsets", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    eventually(Duration::from_secs(60), "some events projected", || async {
        (applied().await >= 3).then_some(())
    })
    .await;
    relay.kill9();
    let _relay = ServiceProcess::spawn("medflow-relay", &args, &env.env_vars());
    eventually(Duration::from_secs(60), "more events projected", || async {
        (applied().await >= 10).then_some(())
    })
    .await;
    projector.kill9();
    let _projector = ServiceProcess::spawn("medflow-projectors", &args, &env.env_vars());
    let ids = writer.await.unwrap();

    eventually(Duration::from_secs(90), "every account projected to sequence 4", || async {
        let row = client
            .query_one(
                "SELECT count(*) FROM projection_offsets WHERE projection = 'accounts' AND last_sequence = 4",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == ids.len() as i64).then_some(())
    })
    .await;
    let live = snapshot(&env).await;
    let mut app = env.app_client().await;
    rebuild(&mut app, &AccountsProjection).await.unwrap();
    assert_eq!(
        live,
        snapshot(&env).await,
        "read model after crashes differs from a rebuild"
    );
}
