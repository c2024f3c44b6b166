//! PostgreSQL connections: a deadpool/tokio-postgres pool for read models, relay and
//! sessions, an sqlx pool for postgres-es, sqlx connections leased for event appends
//! ([`lease`]), and the schema migrations.

pub mod lease;

use std::str::FromStr;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;

/// Migrations from `schema/migrations`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../schema/migrations");

pub fn pg_pool(url: &SecretString, size: usize) -> anyhow::Result<Pool> {
    let config = tokio_postgres::Config::from_str(url.expose_secret())
        .context("MEDFLOW_DATABASE_URL is not a valid PostgreSQL URL")?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .context("failed to build the PostgreSQL pool")
}

pub async fn sqlx_pool(url: &SecretString, size: usize) -> anyhow::Result<sqlx::PgPool> {
    PgPoolOptions::new()
        .max_connections(size as u32)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // Pings every connection on checkout, so that one the server closed while it
        // was idle (a restart, an ended backend) is replaced instead of failing a
        // request. Appends of single statements, the frequent path, do not use this
        // pool (see `lease`).
        .test_before_acquire(true)
        .connect_lazy(url.expose_secret())
        .context("MEDFLOW_DATABASE_URL is not a valid PostgreSQL URL")
}

/// Applies pending migrations. Run as the owner role, not the application role.
pub async fn migrate(owner_url: &SecretString) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(owner_url.expose_secret())
        .await
        .context("failed to connect to PostgreSQL to run migrations")?;
    MIGRATOR
        .run(&pool)
        .await
        .context("failed to apply migrations")?;
    pool.close().await;
    Ok(())
}
