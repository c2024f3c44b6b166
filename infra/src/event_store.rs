//! Write side: cqrs-es aggregates persisted by postgres-es.
//!
//! [`CommandBus`] runs the same load → handle → commit cycle as cqrs-es'
//! `CqrsFramework`, but returns the committed sequence so that a client can wait for
//! its read model to reach it.

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, DomainEvent, EventStore};
use medflow_domain::values::{AccountId, Role};
use postgres_es::PostgresEventRepository;

/// Actor and request behind an event. Never carries personal data.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    pub actor_id: Option<AccountId>,
    pub actor_role: Option<Role>,
    pub request_id: String,
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
}

/// Writes that must commit or roll back together with an aggregate's new events, such
/// as rows that a uniqueness or exclusion constraint checks.
pub trait Effects<A: Aggregate>: Sync {
    /// Applies the effects of `events` inside the transaction that appends them.
    fn apply(
        &self,
        aggregate_id: &str,
        events: &[A::Event],
        connection: &mut sqlx::PgConnection,
    ) -> impl std::future::Future<Output = Result<(), EffectError>> + Send;

    /// SQL without parameters to run right after `BEGIN`, in the same round trip, such
    /// as taking an advisory lock. Statements that follow it see what committed before
    /// it finished.
    fn opening(&self) -> Option<String> {
        None
    }
}

/// Failure of [`Effects::apply`].
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
}

impl<A: Aggregate> CommandBus<A> {
    pub fn new(pool: sqlx::PgPool, services: A::Services) -> Self {
        let repository = PostgresEventRepository::new(pool.clone());
        Self {
            store: PersistedEventStore::new_event_store(repository)
                .with_upcasters(medflow_domain::upcasting::upcasters()),
            services,
            pool,
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

    /// Handles `command` like [`CommandBus::execute`], then appends the events and applies
    /// `effects` in one transaction, so either both are stored or neither is.
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
    ///
    /// The events are written to the same `events` table and in the same form as
    /// postgres-es writes them, so the aggregate loads the same way afterwards.
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

        let metadata = serde_json::to_string(&metadata.into_map())
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let mut transaction = match effects.opening() {
            Some(opening) => self.pool.begin_with(format!("BEGIN; {opening}")).await,
            None => self.pool.begin().await,
        }
        .map_err(classify)?;
        for (offset, event) in events.iter().enumerate() {
            let payload = serde_json::to_string(event)
                .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::json, $7::text::json)",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind((current + offset + 1) as i64)
            .bind(event.event_type())
            .bind(event.event_version())
            .bind(payload)
            .bind(&metadata)
            .execute(&mut *transaction)
            .await
            .map_err(classify)?;
        }
        effects
            .apply(aggregate_id, &events, &mut transaction)
            .await
            .map_err(|error| match error {
                EffectError::Database(error) => classify(error),
                EffectError::Rejected(reason) => TransactionalError::Rejected(reason),
            })?;
        transaction.commit().await.map_err(classify)?;
        Ok(Committed {
            aggregate_id: aggregate_id.to_owned(),
            sequence: current + events.len(),
            appended: events.len(),
        })
    }

    /// Loads an aggregate's current state and sequence (0 when it has no events).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        Ok((context.aggregate, context.current_sequence))
    }
}

fn store_error<E: std::error::Error>(error: sqlx::Error) -> TransactionalError<E> {
    TransactionalError::Aggregate(AggregateError::DatabaseConnectionError(Box::new(error)))
}

/// Maps a duplicate event sequence to a concurrency conflict and an exclusion
/// violation to [`TransactionalError::Excluded`].
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
            _ => {}
        }
    }
    store_error(error)
}
