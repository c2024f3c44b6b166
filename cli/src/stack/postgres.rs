//! MedFlow's roles and database on the machine's PostgreSQL server, which the stack
//! neither starts nor stops.
//!
//! `medflow_owner` owns the database and runs migrations. `medflow_app` is what the
//! services connect as: it may log in and nothing else, and receives table privileges
//! from the migrations.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::StackSettings;

pub const DATABASE: &str = "medflow";
pub const OWNER_ROLE: &str = "medflow_owner";
pub const APP_ROLE: &str = "medflow_app";

/// Oldest server major version the schema supports.
const MIN_SERVER_VERSION_NUM: i32 = 150000;

/// Command that starts the machine's cluster on Debian-style installations.
const START_COMMAND: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Result of [`status`].
pub struct PostgresStatus {
    pub up: bool,
    pub address: String,
    pub detail: String,
}

/// Creates the two roles and the database if they are missing, resets the roles'
/// attributes to the ones described in the module documentation, and restricts database
/// access to the owner and `medflow_app`.
pub async fn ensure_database(settings: &StackSettings) -> anyhow::Result<()> {
    let (client, address) = connect_admin(settings).await?;

    let version: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .context("failed to read the server version")?
        .get(0);
    let version_num: i32 = version
        .parse()
        .with_context(|| format!("unexpected server_version_num '{version}'"))?;
    if version_num < MIN_SERVER_VERSION_NUM {
        bail!("PostgreSQL at {address} is version {version_num}, MedFlow needs 15 or later");
    }

    ensure_role(
        &client,
        OWNER_ROLE,
        "LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    )
    .await?;
    ensure_role(
        &client,
        APP_ROLE,
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    )
    .await?;

    let owner: Option<String> = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&DATABASE],
        )
        .await
        .context("failed to look up the database")?
        .map(|row| row.get(0));
    match owner.as_deref() {
        None => {
            // Identifiers are constants of this module, so formatting them into SQL is safe.
            client
                .batch_execute(&format!("CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}"))
                .await
                .with_context(|| format!("failed to create database {DATABASE}"))?;
            eprintln!("stack: postgres: created database {DATABASE} owned by {OWNER_ROLE}");
        }
        Some(OWNER_ROLE) => {}
        Some(other) => {
            client
                .batch_execute(&format!("ALTER DATABASE {DATABASE} OWNER TO {OWNER_ROLE}"))
                .await
                .with_context(|| {
                    format!("failed to make {OWNER_ROLE} the owner of database {DATABASE}")
                })?;
            eprintln!(
                "stack: postgres: database {DATABASE} was owned by {other}, now by {OWNER_ROLE}"
            );
        }
    }

    client
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC; \
             GRANT CONNECT, TEMP ON DATABASE {DATABASE} TO {APP_ROLE};"
        ))
        .await
        .with_context(|| format!("failed to set the privileges on database {DATABASE}"))?;

    eprintln!(
        "stack: postgres: database {DATABASE} ready at {address}; services connect as \
         postgres://{APP_ROLE}@{address}/{DATABASE}, migrations as postgres://{OWNER_ROLE}@{address}/{DATABASE}"
    );
    Ok(())
}

async fn ensure_role(client: &Client, role: &str, attributes: &str) -> anyhow::Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .with_context(|| format!("failed to look up role {role}"))?
        .is_some();
    let statement = if exists {
        format!("ALTER ROLE {role} {attributes}")
    } else {
        format!("CREATE ROLE {role} {attributes}")
    };
    client
        .batch_execute(&statement)
        .await
        .with_context(|| format!("failed to run `{statement}`"))?;
    if !exists {
        eprintln!("stack: postgres: created role {role} ({attributes})");
    }
    Ok(())
}

/// Drops the `medflow` database, disconnecting its sessions. The roles stay, because other
/// databases (for example test databases) may belong to them.
pub async fn drop_database(settings: &StackSettings) -> anyhow::Result<()> {
    let (client, _) = connect_admin(settings).await?;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await
        .with_context(|| format!("failed to drop database {DATABASE}"))
}

/// Reports whether the server accepts connections and the roles and database exist.
pub async fn status(settings: &StackSettings) -> PostgresStatus {
    let address = parse_admin_config(settings)
        .map(|config| describe_address(&config))
        .unwrap_or_else(|_| "?".to_owned());
    let down = |detail: String| PostgresStatus {
        up: false,
        address: address.clone(),
        detail,
    };

    let client = match connect_admin(settings).await {
        Ok((client, _)) => client,
        Err(error) => return down(format!("{error:#}")),
    };
    let query = client
        .query_one(
            "SELECT \
               EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
               EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2), \
               EXISTS (SELECT 1 FROM pg_database WHERE datname = $3)",
            &[&OWNER_ROLE, &APP_ROLE, &DATABASE],
        )
        .await;
    let row = match query {
        Ok(row) => row,
        Err(error) => return down(format!("failed to look up roles and database: {error}")),
    };

    let missing: Vec<&str> = [(0, OWNER_ROLE), (1, APP_ROLE), (2, DATABASE)]
        .into_iter()
        .filter(|(index, _)| !row.get::<_, bool>(*index))
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return down(format!("server up, missing: {}", missing.join(", ")));
    }
    PostgresStatus {
        up: true,
        address: address.clone(),
        detail: format!("machine's server; database {DATABASE}, roles {OWNER_ROLE} and {APP_ROLE}"),
    }
}

fn parse_admin_config(settings: &StackSettings) -> anyhow::Result<Config> {
    let mut config: Config = settings
        .admin_database_url
        .parse()
        .context("MEDFLOW_ADMIN_DATABASE_URL is not a valid PostgreSQL URL")?;
    for host in config.get_hosts() {
        if let Host::Tcp(name) = host {
            if !matches!(name.as_str(), "127.0.0.1" | "::1" | "localhost") {
                bail!(
                    "MEDFLOW_ADMIN_DATABASE_URL points at host '{name}'; the local stack only \
                     manages a server on 127.0.0.1, ::1 or a Unix socket"
                );
            }
        }
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

/// `host:port` of the first host, without user or password.
fn describe_address(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

async fn connect_admin(settings: &StackSettings) -> anyhow::Result<(Client, String)> {
    let config = parse_admin_config(settings)?;
    let address = describe_address(&config);
    let (client, connection) = config.connect(NoTls).await.map_err(|error| {
        if error.as_db_error().is_some() {
            anyhow!("PostgreSQL at {address} rejected the connection ({error}); check MEDFLOW_ADMIN_DATABASE_URL")
        } else {
            anyhow!("PostgreSQL at {address} is not reachable ({error}); start it with: {START_COMMAND}")
        }
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("stack: postgres: connection to {address} failed: {error}");
        }
    });
    Ok((client, describe_address(&config)))
}
