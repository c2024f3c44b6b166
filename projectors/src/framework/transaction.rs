//! The transaction a projection writes its read model in.

use deadpool_postgres::StatementCache;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row, Statement, Transaction};

/// A read-model transaction. The live projector prepares each statement once per
/// connection. Rebuilds parse it on every call, because the rebuild check redirects
/// table names through `search_path`, which a prepared statement would not follow.
pub struct ReadModelTransaction<'a> {
    transaction: &'a Transaction<'a>,
    statements: Option<&'a StatementCache>,
}

impl<'a> ReadModelTransaction<'a> {
    /// Prepares statements through `statements`, the cache of the transaction's
    /// connection.
    pub fn prepared(transaction: &'a Transaction<'a>, statements: &'a StatementCache) -> Self {
        Self {
            transaction,
            statements: Some(statements),
        }
    }

    /// Parses every statement on each call.
    pub fn unprepared(transaction: &'a Transaction<'a>) -> Self {
        Self {
            transaction,
            statements: None,
        }
    }

    async fn statement(&self, query: &str) -> Result<Option<Statement>, Error> {
        match self.statements {
            Some(cache) => Ok(Some(cache.prepare(self.transaction.client(), query).await?)),
            None => Ok(None),
        }
    }

    pub async fn execute(&self, query: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        match self.statement(query).await? {
            Some(statement) => self.transaction.execute(&statement, params).await,
            None => self.transaction.execute(query, params).await,
        }
    }

    pub async fn query(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        match self.statement(query).await? {
            Some(statement) => self.transaction.query(&statement, params).await,
            None => self.transaction.query(query, params).await,
        }
    }

    pub async fn query_opt(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        match self.statement(query).await? {
            Some(statement) => self.transaction.query_opt(&statement, params).await,
            None => self.transaction.query_opt(query, params).await,
        }
    }
}
