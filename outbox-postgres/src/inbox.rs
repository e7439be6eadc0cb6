//! The consumer's side: the inbox table that makes a handler run once per event id.

use std::time::Duration;

use async_trait::async_trait;
use outbox_core::inbox::{Attempt, InboxHandler, InboxMessage, InboxStore};
use outbox_core::StoreError;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::config::PgInboxConfig;
use crate::error::{is_missing_schema, Error};
use crate::sql::InboxQueries;

/// The PostgreSQL [`InboxStore`]: records each event id in the inbox table in the same transaction as the
/// handler's writes. The handler gets the transaction as a `&mut PgConnection`.
///
/// `INSERT ... ON CONFLICT (event_id) DO NOTHING` comes first: a recorded id is a duplicate and the handler
/// does not run; an id another consumer is handling right now makes the insert wait for that transaction, so
/// the handler never runs twice for one id, even across a consumer-group rebalance.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use outbox_core::inbox::{HandlerError, InboxHandler, InboxMessage};
/// use outbox_postgres::{PgInbox, PgInboxConfig};
/// use sqlx::PgConnection;
///
/// struct CountOrders;
///
/// #[async_trait::async_trait]
/// impl InboxHandler<PgConnection> for CountOrders {
///     async fn handle(&self, conn: &mut PgConnection, message: &InboxMessage) -> Result<(), HandlerError> {
///         sqlx::query("UPDATE order_stats SET seen = seen + 1").execute(conn).await?;
///         Ok(())
///     }
/// }
///
/// outbox_postgres::migrate_inbox(&pool).await?;
/// let inbox = PgInbox::new(pool.clone(), PgInboxConfig::default());
/// inbox.check_schema().await?;
/// // InboxConsumer::new(inbox, source, CountOrders, InboxConfig::default()).run(shutdown).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgInbox {
    pool: PgPool,
    config: PgInboxConfig,
    queries: std::sync::Arc<InboxQueries>,
}

/// A parked message, as [`PgInbox::parked`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The event id (or the stable id of a message without one).
    pub event_id: Uuid,
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Handler attempts made (0 for a message parked for lack of an event id).
    pub attempts: u32,
    /// Why it was parked.
    pub error: Option<String>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
}

impl PgInbox {
    /// An inbox on `pool` for the table in `config`.
    pub fn new(pool: PgPool, config: PgInboxConfig) -> Self {
        let queries = std::sync::Arc::new(InboxQueries::new(&config));
        PgInbox {
            pool,
            config,
            queries,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PgInboxConfig {
        &self.config
    }

    /// Checks that the inbox table exists with every column the inbox uses.
    ///
    /// # Errors
    /// [`Error::MissingMigration`] naming the migration to run; [`Error::Database`] otherwise.
    pub async fn check_schema(&self) -> Result<(), Error> {
        sqlx::query(&self.queries.check_schema)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The oldest `limit` parked messages, with their errors, keys and payloads.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails.
    pub async fn parked(&self, limit: usize) -> Result<Vec<ParkedMessage>, Error> {
        let rows = sqlx::query(&self.queries.list_parked)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|row| {
                Ok(ParkedMessage {
                    event_id: row.try_get("event_id")?,
                    topic: row.try_get("topic")?,
                    partition: row.try_get("partition_id")?,
                    offset: row.try_get("message_offset")?,
                    attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
                    error: row.try_get("last_error")?,
                    key: row.try_get("message_key")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Error::Database)
    }

    fn error(&self, error: sqlx::Error) -> Error {
        if is_missing_schema(&error) {
            Error::MissingInboxMigration {
                table: self.config.table.quoted(),
            }
        } else {
            Error::Database(error)
        }
    }

    fn store_error(&self, error: sqlx::Error) -> StoreError {
        match self.error(error) {
            e @ Error::MissingInboxMigration { .. } => StoreError::MissingMigration {
                hint: e.to_string(),
            },
            Error::Database(e) => StoreError::Backend(Box::new(e)),
            e => StoreError::Backend(Box::new(e)),
        }
    }
}

fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl InboxStore for PgInbox {
    type Connection = PgConnection;

    async fn process(
        &self,
        message: &InboxMessage,
        attempt: u32,
        handler: &dyn InboxHandler<PgConnection>,
    ) -> Result<Attempt, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.store_error(e))?;
        let recorded: Option<Uuid> = sqlx::query_scalar(&self.queries.record_processed)
            .bind(message.event_id)
            .bind(&message.topic)
            .bind(message.partition)
            .bind(message.offset)
            .bind(attempts(attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.store_error(e))?;
        if recorded.is_none() {
            tx.rollback().await.map_err(|e| self.store_error(e))?;
            return Ok(Attempt::Duplicate);
        }
        if let Err(error) = handler.handle(&mut *tx, message).await {
            tx.rollback().await.map_err(|e| self.store_error(e))?;
            return Ok(Attempt::Failed(error));
        }
        // A handler that swallowed a failed statement leaves the transaction aborted, and PostgreSQL answers
        // COMMIT with a rollback, not an error: nothing would be recorded while the message counted as
        // processed. A statement on the transaction tells the two apart.
        if let Err(aborted) = sqlx::query("SELECT 1").execute(&mut *tx).await {
            tx.rollback().await.map_err(|e| self.store_error(e))?;
            let error: outbox_core::inbox::HandlerError = format!(
                "the handler returned Ok but left its transaction aborted (a failed statement was ignored): {aborted}"
            )
            .into();
            return Ok(Attempt::Failed(error));
        }
        tx.commit().await.map_err(|e| self.store_error(e))?;
        Ok(Attempt::Processed)
    }

    async fn park(
        &self,
        message: &InboxMessage,
        attempts_made: u32,
        error: &str,
    ) -> Result<bool, StoreError> {
        let parked: Option<Uuid> = sqlx::query_scalar(&self.queries.park)
            .bind(message.event_id)
            .bind(&message.topic)
            .bind(message.partition)
            .bind(message.offset)
            .bind(attempts(attempts_made))
            .bind(error)
            .bind(message.key.as_deref())
            .bind(message.payload.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(parked.is_some())
    }

    async fn delete_processed(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(&self.queries.delete_processed)
            .bind(older_than.as_secs_f64())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(result.rows_affected())
    }
}
