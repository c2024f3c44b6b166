//! Write side: cqrs-es aggregates persisted by postgres-es.
//!
//! [`CommandBus`] runs the same load → handle → commit cycle as cqrs-es'
//! `CqrsFramework`, but returns the committed sequence so that a client can wait for
//! its read model to reach it.

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
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
}

pub struct CommandBus<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
}

impl<A: Aggregate> CommandBus<A> {
    pub fn new(pool: sqlx::PgPool, services: A::Services) -> Self {
        let repository = PostgresEventRepository::new(pool);
        Self {
            store: PersistedEventStore::new_event_store(repository),
            services,
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
        })
    }

    /// Loads an aggregate's current state and sequence (0 when it has no events).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, usize), AggregateError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        Ok((context.aggregate, context.current_sequence))
    }
}
