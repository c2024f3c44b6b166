//! A pool of sqlx connections that are returned without a round trip.
//!
//! sqlx 0.8 pings every connection released to its `PgPool` (a `Sync` and the wait for
//! `ReadyForQuery`), both to learn whether it still works and to flush a `ROLLBACK`
//! queued by a dropped transaction. On the path that appends one event per command
//! this doubled the round trips. A [`Lease`] skips the ping and instead decides from
//! how its work ended. A connection whose statement completed, or failed with an
//! `ERROR` from the server, goes back to the pool. One that failed on the transport or
//! with a `FATAL` error, or whose future was dropped before [`Lease::finish`], is
//! closed, which also ends any transaction it had open on the server.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions, PgConnection};

/// Opens connections with the options of an sqlx pool.
#[derive(Debug)]
pub struct Connector {
    options: Arc<PgConnectOptions>,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(
        &self,
        _connection: &mut PgConnection,
        _: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        // A lease closes every connection it cannot vouch for (see `Lease::finish`),
        // so whatever is in the pool is fit for the next statement.
        Ok(())
    }
}

/// Connections for single statements, handed out as [`Lease`]s. Cloning shares the
/// pool.
#[derive(Clone)]
pub struct LeasePool {
    pool: managed::Pool<Connector>,
}

impl LeasePool {
    /// Creates a pool of up to `max_size` connections with the connect options of
    /// `pool`. Connections are opened when first needed.
    pub fn like(pool: &sqlx::PgPool, max_size: usize) -> Self {
        let connector = Connector {
            options: pool.connect_options(),
        };
        let pool = managed::Pool::builder(connector)
            .max_size(max_size)
            .wait_timeout(Some(pool.options().get_acquire_timeout()))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("the pool has the runtime its timeouts need");
        Self { pool }
    }

    /// Maximum number of connections, and so of closed ones the pool may hold.
    pub fn max_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// Waits for a free connection or opens one.
    pub async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        let connection = self.pool.get().await.map_err(|error| match error {
            managed::PoolError::Backend(error) => error,
            managed::PoolError::Closed => sqlx::Error::PoolClosed,
            managed::PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            other => sqlx::Error::Configuration(other.to_string().into()),
        })?;
        Ok(Lease {
            connection: Some(connection),
        })
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection that goes back to the pool only through [`Lease::finish`].
/// Dropping it without that closes the connection.
pub struct Lease {
    connection: Option<Object<Connector>>,
}

impl Lease {
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until it is dropped")
    }

    /// Returns the connection to the pool, unless `error` is one that may have left it
    /// broken or out of step with the server.
    pub fn finish(mut self, error: Option<&sqlx::Error>) {
        if error.is_none_or(leaves_connection_usable) {
            // Dropping the object hands it back to the pool.
            drop(self.connection.take());
        }
    }
}

/// Returns true for errors that end the connection: transport errors, and `FATAL` or
/// `PANIC` errors from the server, which it sends right before it closes the connection.
/// A connection the server closed while it sat in the pool, after a restart or an
/// administrator ended its backend, fails its next statement this way.
pub fn is_connection_lost(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_))
        || matches!(
            server_severity(error),
            Some(PgSeverity::Fatal | PgSeverity::Panic)
        )
}

/// Returns true for errors the server reported with severity `ERROR`, after which sqlx
/// reads up to the `ReadyForQuery` before it sends the next statement.
fn leaves_connection_usable(error: &sqlx::Error) -> bool {
    server_severity(error) == Some(PgSeverity::Error)
}

/// Returns the severity of an error the server reported, or `None` for other errors.
fn server_severity(error: &sqlx::Error) -> Option<PgSeverity> {
    let sqlx::Error::Database(error) = error else {
        return None;
    };
    error
        .try_downcast_ref::<PgDatabaseError>()
        .map(PgDatabaseError::severity)
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Taken out of the pool and dropped, the connection's socket closes. The
            // server then rolls back whatever the interrupted work left open.
            drop(Object::take(connection));
        }
    }
}
