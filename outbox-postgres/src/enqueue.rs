//! Writing events into the outbox inside the caller's transaction.

use std::future::Future;
use std::sync::{Arc, LazyLock};

use outbox_core::{NewMessage, OutboxEvent};
use sqlx::PgConnection;
use tracing::{info_span, Instrument};
use uuid::Uuid;

use crate::config::{key_lock, PgOutboxConfig};
use crate::error::Error;
use crate::sql::Queries;

/// The outbox of one table: enqueues events on a connection or transaction you pass in.
///
/// Most users need only the [`EnqueueExt`] methods (`tx.enqueue(&event)`), which use the default table
/// `public.outbox` with notifications on. Make a `PgOutbox` for another table or other settings.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use outbox_postgres::{PgOutbox, PgOutboxConfig, TableName};
/// # #[derive(serde::Serialize, outbox_core::OutboxEvent)]
/// # #[outbox(topic = "orders")] struct OrderPlaced { #[outbox(key)] id: u64 }
///
/// let outbox = PgOutbox::new(PgOutboxConfig {
///     table: TableName::new("billing", "outbox")?,
///     notify: false,
///     ..PgOutboxConfig::default()
/// });
/// let mut tx = pool.begin().await?;
/// let event_id = outbox.enqueue(&mut tx, &OrderPlaced { id: 1 }).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgOutbox {
    config: PgOutboxConfig,
    queries: Arc<Queries>,
}

impl PgOutbox {
    /// An outbox with these settings.
    pub fn new(config: PgOutboxConfig) -> Self {
        let queries = Arc::new(Queries::new(&config));
        PgOutbox { config, queries }
    }

    /// The settings.
    pub fn config(&self) -> &PgOutboxConfig {
        &self.config
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Writes `event` into the outbox on `conn` (a transaction, or a connection: then it commits on its own).
    /// Returns the event id. The event is published if and only if that transaction commits.
    ///
    /// Events of one key are serialized by a transaction-scoped lock on the key, taken here and held until
    /// commit, so they reach the broker in commit order.
    ///
    /// # Errors
    /// [`Error::Encode`] when the payload does not serialize: nothing is written and the transaction stays
    /// usable. [`Error::Database`] when the insert fails (the transaction is then aborted, as with any failed
    /// statement).
    pub async fn enqueue<E: OutboxEvent + Sync + ?Sized>(
        &self,
        conn: &mut PgConnection,
        event: &E,
    ) -> Result<Uuid, Error> {
        let message = NewMessage::from_event(event)?;
        self.enqueue_message(conn, &message).await?;
        Ok(message.id)
    }

    /// Writes an already encoded message (see [`NewMessage::from_event`]), e.g. after adding headers.
    ///
    /// # Errors
    /// [`Error::Database`] when the insert fails.
    pub async fn enqueue_message(
        &self,
        conn: &mut PgConnection,
        message: &NewMessage,
    ) -> Result<(), Error> {
        sqlx::query(&self.queries.insert_one)
            .bind(message.id)
            .bind(&message.topic)
            .bind(&message.key)
            .bind(&message.aggregate_type)
            .bind(&message.event_type)
            .bind(message.version.map(|v| v as i32))
            .bind(message.payload.get())
            .bind(headers_json(&message.headers))
            .bind(key_lock(&message.topic, &message.key))
            .execute(conn)
            .instrument(info_span!(
                "outbox.enqueue",
                event_id = %message.id,
                topic = %message.topic,
                event_type = %message.event_type
            ))
            .await
            .map_err(|e| Error::from_sqlx(e, &self.config.table))?;
        Ok(())
    }

    /// Writes all `events` with one statement, in order; returns their ids in the same order.
    ///
    /// # Errors
    /// [`Error::Encode`] when any payload does not serialize: then nothing is written.
    pub async fn enqueue_all<E: OutboxEvent + Sync>(
        &self,
        conn: &mut PgConnection,
        events: &[E],
    ) -> Result<Vec<Uuid>, Error> {
        let messages = events
            .iter()
            .map(NewMessage::from_event)
            .collect::<Result<Vec<_>, _>>()?;
        self.enqueue_messages(conn, &messages).await?;
        Ok(messages.iter().map(|m| m.id).collect())
    }

    /// Writes already encoded messages with one statement, in order.
    ///
    /// # Errors
    /// [`Error::Database`] when the insert fails.
    pub async fn enqueue_messages(
        &self,
        conn: &mut PgConnection,
        messages: &[NewMessage],
    ) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.len();
        let mut ids = Vec::with_capacity(n);
        let mut topics = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut aggregates = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut headers = Vec::with_capacity(n);
        let mut locks: Vec<i32> = Vec::with_capacity(n);
        for m in messages {
            locks.push(key_lock(&m.topic, &m.key));
            ids.push(m.id);
            topics.push(m.topic.as_str());
            keys.push(m.key.as_str());
            aggregates.push(m.aggregate_type.as_str());
            types.push(m.event_type.as_str());
            versions.push(m.version.map(|v| v as i32));
            payloads.push(m.payload.get());
            headers.push(headers_json(&m.headers));
        }
        locks.sort_unstable();
        locks.dedup();
        sqlx::query(&self.queries.insert_many)
            .bind(ids)
            .bind(topics)
            .bind(keys)
            .bind(aggregates)
            .bind(types)
            .bind(versions)
            .bind(payloads)
            .bind(headers)
            .bind(locks)
            .execute(conn)
            .instrument(info_span!(
                "outbox.enqueue",
                events = n,
                first_event_id = %messages[0].id,
                topic = %messages[0].topic
            ))
            .await
            .map_err(|e| Error::from_sqlx(e, &self.config.table))?;
        Ok(())
    }
}

fn headers_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

static DEFAULT_OUTBOX: LazyLock<PgOutbox> =
    LazyLock::new(|| PgOutbox::new(PgOutboxConfig::default()));

/// `enqueue` and `enqueue_all` on a transaction or connection, writing to the default outbox table
/// (`public.outbox`, notifications on).
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, id: uuid::Uuid) -> Result<(), Box<dyn std::error::Error>> {
/// use outbox_core::OutboxEvent;
/// use outbox_postgres::EnqueueExt;
///
/// #[derive(serde::Serialize, OutboxEvent)]
/// #[outbox(topic = "batch.events", aggregate = "batch", event_type = "batch.created.v1")]
/// struct BatchCreated { #[outbox(key)] batch_id: uuid::Uuid }
///
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE batches SET status = 'created' WHERE id = $1").bind(id).execute(&mut *tx).await?;
/// tx.enqueue(&BatchCreated { batch_id: id }).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub trait EnqueueExt {
    /// See [`PgOutbox::enqueue`].
    fn enqueue<E: OutboxEvent + Sync + ?Sized>(
        &mut self,
        event: &E,
    ) -> impl Future<Output = Result<Uuid, Error>> + Send;

    /// See [`PgOutbox::enqueue_all`].
    fn enqueue_all<E: OutboxEvent + Sync>(
        &mut self,
        events: &[E],
    ) -> impl Future<Output = Result<Vec<Uuid>, Error>> + Send;

    /// See [`PgOutbox::enqueue_message`]: for a message with headers of your own, such as a correlation id.
    ///
    /// ```no_run
    /// # async fn demo(mut tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(serde::Serialize, outbox_core::OutboxEvent)]
    /// # #[outbox(topic = "orders")] struct OrderPlaced { #[outbox(key)] id: u64 }
    /// use outbox_core::NewMessage;
    /// use outbox_postgres::EnqueueExt;
    ///
    /// let message = NewMessage::from_event(&OrderPlaced { id: 7 })?.with_correlation_id("req-42")?;
    /// tx.enqueue_message(&message).await?;
    /// # Ok(()) }
    /// ```
    fn enqueue_message(
        &mut self,
        message: &NewMessage,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

impl EnqueueExt for PgConnection {
    fn enqueue<E: OutboxEvent + Sync + ?Sized>(
        &mut self,
        event: &E,
    ) -> impl Future<Output = Result<Uuid, Error>> + Send {
        DEFAULT_OUTBOX.enqueue(self, event)
    }

    fn enqueue_all<E: OutboxEvent + Sync>(
        &mut self,
        events: &[E],
    ) -> impl Future<Output = Result<Vec<Uuid>, Error>> + Send {
        DEFAULT_OUTBOX.enqueue_all(self, events)
    }

    fn enqueue_message(
        &mut self,
        message: &NewMessage,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        DEFAULT_OUTBOX.enqueue_message(self, message)
    }
}
