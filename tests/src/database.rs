//! Per-test databases cloned from a template that contains the migrated schema.

use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

/// Superuser connection to the cluster (trust authentication on loopback).
pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn url(role: &str, database: &str) -> String {
    format!("postgres://{role}@127.0.0.1:5432/{database}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot connect to {url}: {error}; run `medflow stack up` first")
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Name of the template for the current migrations: a change to any migration makes
/// a new template, so no test runs on a stale schema.
fn template_name() -> String {
    let mut hasher = Sha256::new();
    for migration in medflow_infra::db::MIGRATOR.iter() {
        hasher.update(migration.version.to_le_bytes());
        hasher.update(&migration.checksum);
    }
    format!("medflow_template_{}", &hex::encode(hasher.finalize())[..12])
}

/// Creates a database with the current schema and returns its name.
pub async fn create_test_database() -> String {
    let admin = connect(ADMIN_URL).await;
    // One process at a time creates templates and clones them: CREATE DATABASE fails
    // while another session is connected to the template.
    admin
        .execute("SELECT pg_advisory_lock(727274)", &[])
        .await
        .expect("advisory lock");
    admin
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medflow_owner') THEN
                 CREATE ROLE medflow_owner LOGIN CREATEDB;
               END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medflow_app') THEN
                 CREATE ROLE medflow_app LOGIN;
               END IF;
             END $$;",
        )
        .await
        .expect("create roles");
    let template = template_name();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {template} OWNER medflow_owner"))
            .await
            .expect("create template");
        let owner_url = secrecy::SecretString::from(url("medflow_owner", &template));
        if let Err(error) = medflow_infra::db::migrate(&owner_url).await {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE {template}"))
                .await;
            panic!("migrating the template failed: {error:#}");
        }
    }
    let name = format!("medflow_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {template} OWNER medflow_owner"
        ))
        .await
        .expect("clone template");
    admin
        .execute("SELECT pg_advisory_unlock(727274)", &[])
        .await
        .expect("advisory unlock");
    name
}

/// Drops a test database, disconnecting every session still using it.
pub async fn drop_database(name: &str) {
    let admin = connect(ADMIN_URL).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// Waits until a statement in `database` waits for a lock held by another transaction.
/// Reads the activity as the superuser, which may read every role's sessions.
pub async fn until_a_statement_waits_for_a_lock(database: &str) {
    until_statements_wait_for_locks(database, 1).await;
}

/// Waits until at least `count` statements in `database` wait for locks.
pub async fn until_statements_wait_for_locks(database: &str, count: i64) {
    let observer = connect(&url("postgres", database)).await;
    crate::wait::eventually(
        std::time::Duration::from_secs(10),
        &format!("{count} statements waiting for locks"),
        || async {
            let waiting: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND state = 'active' \
                       AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (waiting >= count).then_some(())
        },
    )
    .await;
}
