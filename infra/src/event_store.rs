//! Write side: cqrs-es aggregates persisted by postgres-es.
//!
//! [`CommandBus`] runs the same load → handle → commit cycle as cqrs-es'
//! `CqrsFramework`, but returns the committed sequence so that a client can wait for
//! its read model to reach it.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, DomainEvent, EventStore};
use lru::LruCache;
use medflow_domain::values::{AccountId, Role};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::PgArguments;
use sqlx::Arguments;
use uuid::Uuid;

use crate::db::lease::{is_connection_lost, LeasePool};

/// Actor and request behind an event. Never carries personal data.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    pub actor_id: Option<AccountId>,
    pub actor_role: Option<Role>,
    pub request_id: String,
    /// Session the actor sent the command with. The statements that
    /// [`CommandBus::execute_loaded_with`] runs append only while it is not revoked,
    /// so a command may act on a session kept in memory. Not stored with the events.
    pub session_id: Option<Uuid>,
}

impl EventMetadata {
    fn into_map(self) -> HashMap<String, String> {
        let mut map = HashMap::from([("request_id".to_owned(), self.request_id)]);
        if let Some(actor) = self.actor_id {
            map.insert("actor_id".to_owned(), actor.to_string());
        }
        if let Some(role) = self.actor_role {
            map.insert("actor_role".to_owned(), role.as_str().to_owned());
        }
        map
    }
}

/// Result of a command: the aggregate and the sequence of its last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub aggregate_id: String,
    pub sequence: usize,
    /// Number of events the command appended; zero when it changed nothing.
    pub appended: usize,
}

pub struct CommandBus<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
    pool: sqlx::PgPool,
    /// Connections for commands that append with one statement.
    appends: LeasePool,
    /// Aggregates as this process last committed them, with their sequence; see
    /// [`CommandBus::remembering`].
    recent: Option<Mutex<LruCache<String, (A, usize)>>>,
}

/// Writes that must commit or roll back together with an aggregate's new events, such
/// as rows that a uniqueness or exclusion constraint checks.
///
/// Each event is appended by one statement that can also carry a condition and a write
/// of the effects (see [`EventStatement`]). A command with one event and no
/// [`Effects::follow_up`] runs as that single statement, which PostgreSQL commits on its
/// own. Otherwise the statements run in one transaction.
pub trait Effects<A: Aggregate>: Sync {
    /// Returns the condition and write to add to the statement that appends `event`.
    /// Their parameters continue after those already in `arguments`, so the first one is
    /// numbered `arguments.len() + 1` before it is added.
    fn statement(
        &self,
        _aggregate_id: &str,
        _event: &A::Event,
        _arguments: &mut PgArguments,
    ) -> Result<EventStatement, EffectError> {
        Ok(EventStatement::default())
    }

    /// Returns true when [`Effects::follow_up`] has work to do, which makes the command
    /// run in an explicit transaction.
    fn has_follow_up(&self) -> bool {
        false
    }

    /// Runs in the appending transaction after every event is appended. Its statements
    /// read what committed before the appends took their locks.
    fn follow_up(
        &self,
        _aggregate_id: &str,
        _events: &[A::Event],
        _connection: &mut sqlx::PgConnection,
    ) -> impl std::future::Future<Output = Result<(), EffectError>> + Send {
        async { Ok(()) }
    }
}

/// Additions of an [`Effects`] to the statement appending one event.
#[derive(Debug, Default)]
pub struct EventStatement {
    /// A query that must return a row for the event to be appended, such as a version
    /// check on a row locked `FOR NO KEY UPDATE`. Without a row nothing is written and the
    /// command fails with [`TransactionalError::Rejected`] and `rejection`.
    pub condition: Option<String>,
    /// A data-modifying statement run in the same statement as the append. It must
    /// change nothing unless the CTE `appended` (one row once the event is appended)
    /// has a row, for example `INSERT ... SELECT ... FROM appended`.
    pub write: Option<String>,
    /// Message for the client when `condition` returned no row, with what to do next.
    pub rejection: String,
}

/// Failure of an [`Effects`] method.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The effects found state that forbids the change, such as data that changed after
    /// it was read before the transaction. The message tells the client what to do.
    #[error("{0}")]
    Rejected(String),
}

/// Failure of [`CommandBus::execute_with`].
#[derive(Debug, thiserror::Error)]
pub enum TransactionalError<E: std::error::Error> {
    #[error(transparent)]
    Aggregate(#[from] AggregateError<E>),
    /// An exclusion constraint rejected the effects; the value is the constraint name.
    #[error("exclusion constraint {0} rejected the change")]
    Excluded(String),
    /// The effects rejected the change; see [`EffectError::Rejected`].
    #[error("{0}")]
    Rejected(String),
    /// PostgreSQL aborted the write to break a deadlock with a concurrent one, again
    /// after one retry. Nothing was stored; the request may be sent again.
    #[error("the write was aborted to resolve a deadlock with a concurrent write")]
    Deadlocked,
    /// The session in [`EventMetadata::session_id`] was revoked; nothing was stored.
    #[error("the session the command was sent with has ended")]
    SessionEnded,
}

impl<A: Aggregate> CommandBus<A> {
    /// Creates a bus that loads aggregates and runs transactions on `pool`, and appends
    /// single statements on a [`LeasePool`] of the same size.
    pub fn new(pool: sqlx::PgPool, services: A::Services) -> Self {
        let repository = PostgresEventRepository::new(pool.clone());
        let appends = LeasePool::like(&pool, pool.options().get_max_connections() as usize);
        Self {
            store: PersistedEventStore::new_event_store(repository)
                .with_upcasters(medflow_domain::upcasting::upcasters()),
            services,
            pool,
            appends,
            recent: None,
        }
    }

    /// Appends single statements on `appends`, such as a pool shared by several buses.
    pub fn appending_on(mut self, appends: LeasePool) -> Self {
        self.appends = appends;
        self
    }

    /// Remembers up to `capacity` aggregates as this process last committed them, for
    /// [`CommandBus::load_remembered`].
    pub fn remembering(mut self, capacity: NonZeroUsize) -> Self {
        self.recent = Some(Mutex::new(LruCache::new(capacity)));
        self
    }

    /// Drops the remembered state of an aggregate, such as one found to be outdated.
    pub fn forget(&self, aggregate_id: &str) {
        if let Some(recent) = &self.recent {
            lock(recent).pop(aggregate_id);
        }
    }

    /// Handles `command` against the aggregate's current state and appends the events it
    /// produces. A concurrent writer that committed first turns this into
    /// [`AggregateError::AggregateConflict`].
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> Result<Committed, AggregateError<A::Error>> {
        let mut context = self.store.load_aggregate(aggregate_id).await?;
        let sink = EventSink::default();
        context
            .aggregate()
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let current = context.current_sequence;
        let events = sink.collect().await;
        let committed = self
            .store
            .commit(events, context, metadata.into_map())
            .await?;
        let sequence = committed
            .last()
            .map_or(current, |envelope| envelope.sequence);
        Ok(Committed {
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            appended: committed.len(),
        })
    }

    /// Handles `command` like [`CommandBus::execute`], then appends the events together
    /// with `effects`, atomically: either both are stored or neither is.
    pub async fn execute_with<F: Effects<A>>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: EventMetadata,
        effects: &F,
    ) -> Result<Committed, TransactionalError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        self.execute_loaded_with(
            aggregate_id,
            context.aggregate,
            context.current_sequence,
            command,
            metadata,
            effects,
        )
        .await
    }

    /// Like [`CommandBus::execute_with`] for an aggregate id the caller has just
    /// generated, such as a random UUID: the command is handled against the empty
    /// aggregate without reading the event store. Should the id exist after all, the
    /// primary key turns the append into [`AggregateError::AggregateConflict`].
    pub async fn create_with<F: Effects<A>>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: EventMetadata,
        effects: &F,
    ) -> Result<Committed, TransactionalError<A::Error>> {
        self.execute_loaded_with(aggregate_id, A::default(), 0, command, metadata, effects)
            .await
    }

    /// Handles `command` like [`CommandBus::execute_with`], against `aggregate` as the
    /// caller loaded it with [`CommandBus::load`] (its last event has sequence
    /// `current`) instead of reading it again. If another writer appended since, the
    /// primary key turns the append into [`AggregateError::AggregateConflict`], as for
    /// any concurrent write.
    pub async fn execute_loaded_with<F: Effects<A>>(
        &self,
        aggregate_id: &str,
        mut aggregate: A,
        current: usize,
        command: A::Command,
        metadata: EventMetadata,
        effects: &F,
    ) -> Result<Committed, TransactionalError<A::Error>> {
        let sink = EventSink::default();
        aggregate
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(Committed {
                aggregate_id: aggregate_id.to_owned(),
                sequence: current,
                appended: 0,
            });
        }

        let session = metadata.session_id;
        let metadata = serde_json::to_string(&metadata.into_map())
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let mut statements = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            statements.push(self.append_statement(
                aggregate_id,
                current + offset + 1,
                event,
                &metadata,
                session,
                effects,
            )?);
        }

        if let ([statement], false) = (statements.as_slice(), effects.has_follow_up()) {
            self.append_alone(aggregate_id, statement).await?;
        } else {
            let mut transaction = self.pool.begin().await.map_err(classify)?;
            for statement in &statements {
                statement
                    .run(&mut transaction)
                    .await
                    .map_err(AppendError::into_transactional)?;
            }
            effects
                .follow_up(aggregate_id, &events, &mut transaction)
                .await
                .map_err(effect_error)?;
            transaction.commit().await.map_err(classify)?;
        }
        let appended = events.len();
        let sequence = current + appended;
        if let Some(recent) = &self.recent {
            for event in events {
                aggregate.apply(event);
            }
            lock(recent).put(aggregate_id.to_owned(), (aggregate, sequence));
        }
        Ok(Committed {
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            appended,
        })
    }

    /// Runs one append statement on its own, which PostgreSQL commits by itself.
    ///
    /// A pooled connection that the server has closed fails the statement before it
    /// runs, so the statement runs again on another connection, as often as the pool may
    /// hold closed ones. If a failed attempt did commit after all (the server ended just
    /// between commit and reply), the next one conflicts on the event's primary key, so
    /// the event is never stored twice.
    async fn append_alone<E: std::error::Error>(
        &self,
        aggregate_id: &str,
        statement: &Append,
    ) -> Result<(), TransactionalError<E>> {
        let mut attempts_left = self.appends.max_size();
        loop {
            let mut lease = self.appends.acquire().await.map_err(classify)?;
            let mut outcome = statement.run(lease.connection()).await;
            // Two inserts checking one exclusion constraint can wait for each other, and
            // PostgreSQL then aborts one. Nothing was written, so the statement runs once
            // more and now meets the other's committed row.
            if outcome.as_ref().is_err_and(AppendError::is_deadlock) {
                tracing::info!(
                    aggregate_id,
                    "append aborted to resolve a deadlock; running it once more"
                );
                outcome = statement.run(lease.connection()).await;
            }
            match outcome.as_ref().err().and_then(AppendError::database) {
                Some(error) if attempts_left > 0 && is_connection_lost(error) => {
                    tracing::warn!(
                        aggregate_id,
                        %error,
                        "append failed because the server closed the connection; running it on another"
                    );
                    lease.finish(Some(error));
                    attempts_left -= 1;
                }
                error => {
                    lease.finish(error);
                    return outcome.map_err(AppendError::into_transactional);
                }
            }
        }
    }

    /// Builds the statement that appends `event` at `sequence` with what `effects` adds
    /// to it, and, given `session`, the check that the session is not revoked. The
    /// events are written to the same table and in the same form as postgres-es writes
    /// them, so the aggregate loads the same way afterwards.
    fn append_statement<F: Effects<A>>(
        &self,
        aggregate_id: &str,
        sequence: usize,
        event: &A::Event,
        metadata: &str,
        session: Option<Uuid>,
        effects: &F,
    ) -> Result<Append, TransactionalError<A::Error>> {
        let payload = serde_json::to_string(event)
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let mut arguments = PgArguments::default();
        let added = (|| {
            arguments.add(A::TYPE)?;
            arguments.add(aggregate_id.to_owned())?;
            arguments.add(sequence as i64)?;
            arguments.add(event.event_type())?;
            arguments.add(event.event_version())?;
            arguments.add(payload)?;
            arguments.add(metadata.to_owned())
        })();
        added.map_err(AggregateError::UnexpectedError)?;
        let added = effects
            .statement(aggregate_id, event, &mut arguments)
            .map_err(effect_error)?;
        let mut conditions: Vec<String> = added
            .condition
            .into_iter()
            .map(|condition| format!("EXISTS ({condition})"))
            .collect();
        let session_live = match session {
            Some(session) => {
                arguments
                    .add(session)
                    .map_err(AggregateError::UnexpectedError)?;
                let live = format!(
                    "EXISTS (SELECT FROM sessions WHERE session_id = ${} AND revoked_at IS NULL)",
                    arguments.len()
                );
                conditions.push(live.clone());
                live
            }
            None => "true".to_owned(),
        };
        let condition = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let write = added
            .write
            .map(|write| format!(", effects AS ({write})"))
            .unwrap_or_default();
        // The second column separates a revoked session from a failed condition of the
        // effects. Both read the same snapshot.
        let sql = format!(
            "WITH appended AS (\
               INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
               SELECT $1, $2, $3, $4, $5, $6::text::json, $7::text::json{condition} \
               RETURNING sequence){write} \
             SELECT (SELECT count(*) FROM appended), {session_live}"
        );
        Ok(Append {
            sql,
            arguments,
            rejection: added.rejection,
        })
    }

    /// Returns the aggregate as this process last committed it, or loads it when it
    /// remembers none. The third value is true for a remembered state. That state is
    /// behind if another process appended since. A command run on it then fails with
    /// [`AggregateError::AggregateConflict`] and appends nothing, or a rule rejects a
    /// state that has passed, so callers run such a command again on
    /// [`CommandBus::load`].
    pub async fn load_remembered(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, usize, bool), AggregateError<A::Error>>
    where
        A: Clone,
    {
        if let Some(recent) = &self.recent {
            if let Some((aggregate, sequence)) = lock(recent).get(aggregate_id) {
                return Ok((aggregate.clone(), *sequence, true));
            }
        }
        let (aggregate, sequence) = self.load(aggregate_id).await?;
        Ok((aggregate, sequence, false))
    }

    /// Loads an aggregate's current state and sequence (0 when it has no events).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        Ok((context.aggregate, context.current_sequence))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change replaces a whole entry, so a lock poisoned by a panicking holder is
    // used as it is.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One event's append statement, ready to run.
struct Append {
    sql: String,
    arguments: PgArguments,
    rejection: String,
}

impl Append {
    async fn run(&self, connection: &mut sqlx::PgConnection) -> Result<(), AppendError> {
        let (appended, session_live): (i64, bool) =
            sqlx::query_as_with(&self.sql, self.arguments.clone())
                .fetch_one(connection)
                .await
                .map_err(AppendError::Failed)?;
        if appended == 1 {
            Ok(())
        } else if !session_live {
            Err(AppendError::SessionEnded)
        } else {
            Err(AppendError::Rejected(self.rejection.clone()))
        }
    }
}

/// Failure of one [`Append`], which keeps the database error for [`Lease::finish`].
///
/// [`Lease::finish`]: crate::db::lease::Lease::finish
enum AppendError {
    Failed(sqlx::Error),
    SessionEnded,
    Rejected(String),
}

impl AppendError {
    fn is_deadlock(&self) -> bool {
        let Self::Failed(sqlx::Error::Database(error)) = self else {
            return false;
        };
        error.code().as_deref() == Some(DEADLOCK_DETECTED)
    }

    fn database(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Failed(error) => Some(error),
            Self::SessionEnded | Self::Rejected(_) => None,
        }
    }

    fn into_transactional<E: std::error::Error>(self) -> TransactionalError<E> {
        match self {
            Self::Failed(error) => classify(error),
            Self::SessionEnded => TransactionalError::SessionEnded,
            Self::Rejected(reason) => TransactionalError::Rejected(reason),
        }
    }
}

fn effect_error<E: std::error::Error>(error: EffectError) -> TransactionalError<E> {
    match error {
        EffectError::Database(error) => classify(error),
        EffectError::Rejected(reason) => TransactionalError::Rejected(reason),
    }
}

fn store_error<E: std::error::Error>(error: sqlx::Error) -> TransactionalError<E> {
    TransactionalError::Aggregate(AggregateError::DatabaseConnectionError(Box::new(error)))
}

/// SQLSTATE `deadlock_detected`.
const DEADLOCK_DETECTED: &str = "40P01";

/// Maps a duplicate event sequence to a concurrency conflict, an exclusion violation
/// to [`TransactionalError::Excluded`] and a deadlock to
/// [`TransactionalError::Deadlocked`].
fn classify<E: std::error::Error>(error: sqlx::Error) -> TransactionalError<E> {
    if let sqlx::Error::Database(database) = &error {
        match database.code().as_deref() {
            Some("23505") if database.constraint() == Some("events_pkey") => {
                return TransactionalError::Aggregate(AggregateError::AggregateConflict);
            }
            Some("23P01") => {
                let constraint = database.constraint().unwrap_or_default().to_owned();
                return TransactionalError::Excluded(constraint);
            }
            Some(DEADLOCK_DETECTED) => return TransactionalError::Deadlocked,
            _ => {}
        }
    }
    store_error(error)
}
