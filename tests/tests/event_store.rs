//! The event table's guarantees: append-only for every role, and no personal data in
//! events or on Kafka.

use std::time::Duration;

use medflow_tests::api::unique_email;
use medflow_tests::kafka::read_topic;
use medflow_tests::TestEnv;
use reqwest::StatusCode;
use serde_json::json;

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
     VALUES ('account', 'a-1', 1, 'AccountReinstated', '1', '{}', '{}')";

#[tokio::test]
async fn application_role_cannot_change_events() {
    let env = TestEnv::new().await;
    let app = env.app_client().await;
    app.execute(INSERT_EVENT, &[]).await.unwrap();
    for statement in [
        "UPDATE events SET payload = '{\"forged\": true}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE audit_entries SET outcome = 'success'",
        "DELETE FROM audit_entries",
    ] {
        let error = app.execute(statement, &[]).await.expect_err(statement);
        assert_eq!(
            error.code().map(|code| code.code()),
            Some("42501"),
            "{statement}: {error}"
        );
    }
}

#[tokio::test]
async fn owner_role_cannot_change_events_either() {
    let env = TestEnv::new().await;
    let owner = env.owner_client().await;
    owner.execute(INSERT_EVENT, &[]).await.unwrap();
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = owner.execute(statement, &[]).await.expect_err(statement);
        let message = error
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let count: i64 = owner
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn extra_columns_fill_themselves_and_cannot_be_forged() {
    let env = TestEnv::new().await;
    let app = env.app_client().await;
    app.execute(INSERT_EVENT, &[]).await.unwrap();
    let row = app
        .query_one(
            "SELECT global_position, transaction_id::text, recorded_at IS NOT NULL FROM events",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) >= 1);
    assert!(row.get::<_, String>(1).parse::<u64>().unwrap() > 0);
    assert!(row.get::<_, bool>(2));
    let forged = app
        .execute(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_position)
             VALUES ('account', 'a-2', 1, 'X', '1', '{}', '{}', 1)",
            &[],
        )
        .await;
    assert!(forged.is_err(), "global_position must not be settable");
}

#[tokio::test]
async fn events_and_topics_hold_no_personal_data() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let email = unique_email("Zephyrine.Quillfeather");
    let name = "Zephyrine Quillfeather";
    let (account_id, _) = api.register_ok("patient", &email, name).await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;
    let admin = api.login_ok(&admin_email).await;
    let path = format!("/admin/accounts/{account_id}/suspension");
    let response = api
        .command_post(
            &admin.token,
            &path,
            json!({ "reason": "Quillfeather asked to pause" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let login = api.login_ok(&admin_email).await;
    assert_eq!(api.me(&login.token, Some(1)).await.status(), StatusCode::OK);

    let needles = ["zephyrine", "quillfeather", "example.org", "$scrypt$"];
    let owner = env.owner_client().await;
    let rows = owner
        .query("SELECT lower(payload::text || metadata::text), metadata::text FROM events ORDER BY global_position", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let text: String = row.get(0);
        for needle in needles {
            assert!(!text.contains(needle), "event contains {needle}: {text}");
        }
    }
    let suspension_metadata: serde_json::Value =
        serde_json::from_str(&rows[2].get::<_, String>(1)).unwrap();
    assert_eq!(suspension_metadata["actor_id"], admin.account_id.as_str());
    assert_eq!(suspension_metadata["actor_role"], "admin");
    assert!(suspension_metadata["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    let records = read_topic(
        &env.brokers,
        &format!("{}account", env.topic_prefix),
        3,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 3);
    for record in &records {
        let text = serde_json::to_string(&record.event).unwrap().to_lowercase();
        for needle in needles {
            assert!(
                !text.contains(needle),
                "Kafka record contains {needle}: {text}"
            );
        }
    }
    // The read model keeps the ciphertext too; only the query API opens it.
    let directory: String = owner
        .query_one("SELECT lower(row_to_json(d)::text) FROM account_directory d WHERE account_id = $1::text::uuid", &[&account_id])
        .await
        .unwrap()
        .get(0);
    assert!(!directory.contains("zephyrine"), "{directory}");
}

/// Connections leased for appends go back to the pool without a round trip, so the
/// lease alone decides whether a connection may be used again.
mod leases {
    use std::time::Duration;

    use medflow_infra::db::lease::LeasePool;
    use medflow_tests::TestEnv;
    use sqlx::{Connection, PgConnection};

    async fn one_connection_pool(env: &TestEnv) -> LeasePool {
        let pool = medflow_infra::db::sqlx_pool(&env.app_url().into(), 1)
            .await
            .unwrap();
        LeasePool::like(&pool, 1)
    }

    async fn backend(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(connection)
            .await
    }

    #[tokio::test]
    async fn finished_lease_returns_its_connection() {
        let env = TestEnv::new().await;
        let leases = one_connection_pool(&env).await;

        let mut lease = leases.acquire().await.unwrap();
        let first = backend(lease.connection()).await.unwrap();
        lease.finish(None);

        let mut lease = leases.acquire().await.unwrap();
        assert_eq!(backend(lease.connection()).await.unwrap(), first);
    }

    #[tokio::test]
    async fn server_error_keeps_connection_usable() {
        let env = TestEnv::new().await;
        let leases = one_connection_pool(&env).await;

        let mut lease = leases.acquire().await.unwrap();
        let first = backend(lease.connection()).await.unwrap();
        let error = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
            .fetch_one(lease.connection())
            .await
            .unwrap_err();
        assert!(matches!(error, sqlx::Error::Database(_)), "{error}");
        lease.finish(Some(&error));

        let mut lease = leases.acquire().await.unwrap();
        assert_eq!(backend(lease.connection()).await.unwrap(), first);
    }

    /// A terminated backend sends a `FATAL` error and closes the socket.
    #[tokio::test]
    async fn terminated_backend_closes_connection() {
        let env = TestEnv::new().await;
        let leases = one_connection_pool(&env).await;
        let mut lease = leases.acquire().await.unwrap();
        let first = backend(lease.connection()).await.unwrap();
        lease.finish(None);

        let killed: bool = env
            .app_client()
            .await
            .query_one("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap()
            .get(0);
        assert!(killed);
        let mut lease = leases.acquire().await.unwrap();
        let error = backend(lease.connection()).await.unwrap_err();
        lease.finish(Some(&error));

        let mut lease = leases.acquire().await.unwrap();
        let second = backend(lease.connection()).await.unwrap();
        assert_ne!(second, first);
    }

    /// A dropped sqlx transaction only queues its `ROLLBACK`, and nothing sends it while
    /// the connection sits in the pool. Closing the connection makes the server roll
    /// back, which releases the transaction's locks.
    #[tokio::test]
    async fn dropped_lease_releases_open_transaction() {
        let env = TestEnv::new().await;
        let leases = one_connection_pool(&env).await;
        let observer = env.app_client().await;

        let mut lease = leases.acquire().await.unwrap();
        let first = backend(lease.connection()).await.unwrap();
        let mut transaction = lease.connection().begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(4242)")
            .execute(&mut *transaction)
            .await
            .unwrap();
        drop(transaction);
        drop(lease);

        let mut released = false;
        for _ in 0..50 {
            released = observer
                .query_one("SELECT pg_try_advisory_lock(4242)", &[])
                .await
                .unwrap()
                .get(0);
            if released {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            released,
            "the dropped lease's transaction still holds its lock"
        );

        let mut lease = leases.acquire().await.unwrap();
        assert_ne!(backend(lease.connection()).await.unwrap(), first);
    }
}
