//! The consumer side: an inbox that makes a consumer idempotent.
//!
//! ## Delivery semantics
//! Effectively once per event id, on top of an at-least-once broker. For every message the
//! [`InboxConsumer`] asks its [`InboxStore`] to open a transaction, record the message's event id, run the
//! [`InboxHandler`] on that same transaction, and commit; only then does it commit the message's offset at
//! the [`MessageSource`]. A message whose event id is already recorded is skipped without running the
//! handler (a [`InboxOutcome::Duplicate`]): a redelivery after a crash between the database commit and the
//! offset commit, a relay that published an event twice, or a producer that sent it twice.
//!
//! Messages are processed one at a time, in the order the source delivers them, so the order within a
//! partition is kept. A handler error rolls the transaction back; the message is tried again in process, with
//! [`InboxConfig::retry`] backoff, up to [`InboxConfig::max_attempts`] times; then it is *parked*: recorded
//! with its error (so a redelivery is skipped too) and its offset committed, so the partition moves on.
//!
//! A message without a valid `event-id` header (missing, or not a UUID) cannot be deduplicated; it is parked
//! at once, without running the handler, under a stable id made from its topic, partition and offset (see
//! [`InboxMessage::id_problem`]).
//!
//! The loop is written against the three traits only: a database backend implements [`InboxStore`] (e.g.
//! `outbox_postgres::PgInbox`), a broker backend implements [`MessageSource`] (e.g.
//! `outbox_kafka::KafkaSource`), and neither knows the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use uuid::Uuid;

use crate::error::StoreError;
pub use crate::error::{InboxError, SourceError};
use crate::retry::RetryPolicy;

/// The header that carries the event id (a UUID), as the relay's transports set it.
pub const EVENT_ID_HEADER: &str = "event-id";

/// What a handler's error is: any error, boxed. `?` works on `sqlx::Error`, `serde_json::Error`, `anyhow` via
/// `.into()`, and strings via `.into()`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A message read from the broker, as the handler sees it. Made by [`InboxMessage::new`], which reads the
/// event id from the [`EVENT_ID_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    /// The event id from the `event-id` header; for a message without a valid one, a stable id made from its
    /// topic, partition and offset (such messages are parked, never handled).
    pub event_id: Uuid,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload (empty for a message without one).
    pub payload: Vec<u8>,
    /// Every header in order; a header without a value has an empty one.
    pub headers: Vec<(String, Vec<u8>)>,
    id_problem: Option<&'static str>,
}

impl InboxMessage {
    /// A message at `topic`/`partition`/`offset`; takes its event id from the `event-id` header.
    ///
    /// ```
    /// use outbox_core::inbox::InboxMessage;
    ///
    /// let id = uuid::Uuid::now_v7();
    /// let m = InboxMessage::new("orders", 0, 42, Some(b"7".to_vec()), br#"{"n":1}"#.to_vec(),
    ///     vec![("event-id".into(), id.to_string().into_bytes())]);
    /// assert_eq!(m.event_id, id);
    /// assert_eq!(m.id_problem(), None);
    ///
    /// let anonymous = InboxMessage::new("orders", 0, 43, None, vec![], vec![]);
    /// assert_eq!(anonymous.id_problem(), Some("no event-id header"));
    /// ```
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Self {
        let topic = topic.into();
        let header = headers
            .iter()
            .find(|(k, _)| k == EVENT_ID_HEADER)
            .map(|(_, v)| v.as_slice());
        let parsed = match header {
            None => Err("no event-id header"),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
                .ok_or("event-id header is not a UUID"),
        };
        let (event_id, id_problem) = match parsed {
            Ok(id) => (id, None),
            Err(problem) => (position_id(&topic, partition, offset), Some(problem)),
        };
        InboxMessage {
            event_id,
            topic,
            partition,
            offset,
            key,
            payload,
            headers,
            id_problem,
        }
    }

    /// Why the message has no usable event id (`"no event-id header"`, `"event-id header is not a UUID"`), or
    /// `None` when it has one.
    pub fn id_problem(&self) -> Option<&'static str> {
        self.id_problem
    }

    /// The producer's trace context, from the W3C `traceparent` (and `tracestate`) header the outbox stored
    /// at enqueue; `None` when the message has none or it is malformed. The consumer already makes each
    /// handler's span (`outbox.inbox.deliver`) a child of it.
    #[cfg(feature = "opentelemetry")]
    pub fn trace_context(&self) -> Option<opentelemetry::Context> {
        let text = |name| self.header(name).and_then(|v| std::str::from_utf8(v).ok());
        crate::telemetry::parse_traceparent(
            text(crate::telemetry::TRACEPARENT)?,
            text(crate::telemetry::TRACESTATE),
        )
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The value of the first header called `name`, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The payload parsed as JSON.
    ///
    /// # Errors
    /// When the payload is not JSON of type `T`.
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A stable id for a message without an event id: the same position always gets the same id, so a redelivery
/// of it is recognised too. A UUID version 8 (custom) from an FNV-1a hash of the topic and partition, and the
/// offset.
fn position_id(topic: &str, partition: i32, offset: i64) -> Uuid {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain([0x1f]).chain(partition.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&h.to_be_bytes());
    bytes[8..].copy_from_slice(&offset.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The user's code: applies one message to the database, on the transaction the inbox opened. `C` is the
/// store's connection type (`sqlx::PgConnection` for PostgreSQL).
///
/// Return an error to roll the transaction back; the message is retried, then parked. Do not commit or roll
/// back yourself.
///
/// ```
/// use outbox_core::inbox::{HandlerError, InboxHandler, InboxMessage};
///
/// /// Counts messages per topic in a plain map (a real handler writes with the connection it gets).
/// struct CountPerTopic;
///
/// #[async_trait::async_trait]
/// impl InboxHandler<std::collections::HashMap<String, u32>> for CountPerTopic {
///     async fn handle(&self, conn: &mut std::collections::HashMap<String, u32>, message: &InboxMessage)
///         -> Result<(), HandlerError> {
///         *conn.entry(message.topic.clone()).or_default() += 1;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait InboxHandler<C: ?Sized + Send>: Send + Sync {
    /// Applies `message` using `conn`, which is inside the transaction that records the message.
    async fn handle(&self, conn: &mut C, message: &InboxMessage) -> Result<(), HandlerError>;
}

/// What one attempt at a message did, as [`InboxStore::process`] reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Attempt {
    /// The handler ran and the transaction committed.
    Processed,
    /// The event id was already recorded (processed or parked); the handler did not run.
    Duplicate,
    /// The handler failed; the transaction was rolled back, nothing was recorded.
    Failed(HandlerError),
}

/// Where a consumer records the event ids it has handled, in the same transaction as the handler's writes.
///
/// A store must make `process` atomic: the event id is recorded if and only if the handler's writes commit;
/// two concurrent `process` calls for one event id must not both run the handler to commit (a unique key on
/// the event id does this: the second insert waits for the first transaction and then finds the row).
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// What the handler gets to write with (e.g. `sqlx::PgConnection`).
    type Connection: ?Sized + Send;

    /// In one transaction: records `message.event_id` unless it is recorded already (then
    /// [`Attempt::Duplicate`]), runs `handler`, commits. `attempt` is 1 for the first try.
    async fn process(
        &self,
        message: &InboxMessage,
        attempt: u32,
        handler: &dyn InboxHandler<Self::Connection>,
    ) -> Result<Attempt, StoreError>;

    /// Records `message` as parked after `attempts` failed attempts with `error`, so it is not handled again;
    /// returns `false` when its event id was recorded already.
    async fn park(
        &self,
        message: &InboxMessage,
        attempts: u32,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes up to `limit` processed records older than `older_than` (parked ones are kept); returns how
    /// many it deleted.
    async fn delete_processed(&self, older_than: Duration, limit: usize)
        -> Result<u64, StoreError>;
}

/// Where messages come from, and where the consumer confirms them (e.g. a Kafka consumer group).
#[async_trait]
pub trait MessageSource: Send + Sync {
    /// The next message; waits until one arrives. Must be cancel-safe: the consumer drops the future on
    /// shutdown, and no message may be lost by that.
    async fn next(&self) -> Result<InboxMessage, SourceError>;

    /// Confirms `message` and every earlier message of its partition, so they are not delivered again to
    /// this consumer group. Called once the message is processed, duplicated or parked.
    async fn commit(&self, message: &InboxMessage) -> Result<(), SourceError>;
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Handled and recorded.
    Processed,
    /// Its event id was recorded already; skipped.
    Duplicate,
    /// Failed every attempt, or had no usable event id: recorded as parked with its error.
    Parked,
}

/// How an [`InboxConsumer`] behaves. Start from `InboxConfig::default()`.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Attempts at a message whose handler fails before it is parked. Default 5.
    pub max_attempts: u32,
    /// Backoff between attempts at one message. The partition waits meanwhile (that keeps its order).
    /// Default 100 ms doubling up to 5 s, jitter 20 %.
    pub retry: RetryPolicy,
    /// Backoff while the database or the broker is unreachable; such failures cost no attempt. Default
    /// 500 ms doubling up to 30 s.
    pub outage_backoff: RetryPolicy,
    /// Delete processed records after this long, in batches. Keep it longer than any redelivery can come
    /// late (the topic's retention): a redelivery of a deleted record is handled again. `None`: keep
    /// everything. Default `None`.
    pub retention: Option<Duration>,
    /// How often the retention cleanup runs. Default 60 s.
    pub cleanup_interval: Duration,
    /// Most records one cleanup statement deletes. Default 1,000.
    pub cleanup_batch: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_attempts: 5,
            retry: RetryPolicy {
                initial: Duration::from_millis(100),
                multiplier: 2.0,
                max: Duration::from_secs(5),
                jitter: 0.2,
            },
            outage_backoff: RetryPolicy {
                initial: Duration::from_millis(500),
                multiplier: 2.0,
                max: Duration::from_secs(30),
                jitter: 0.2,
            },
            retention: None,
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch: 1_000,
        }
    }
}

/// Counters of what an [`InboxConsumer`] did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages handled and recorded.
    pub processed: u64,
    /// Messages skipped because their event id was recorded already.
    pub duplicates: u64,
    /// Messages parked.
    pub parked: u64,
    /// Failed handler attempts that were tried again.
    pub retries: u64,
    /// Offset commits that failed (the messages may be delivered again, and are then skipped as duplicates).
    pub commit_failures: u64,
    /// Processed records deleted by the retention cleanup.
    pub deleted: u64,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    duplicates: AtomicU64,
    parked: AtomicU64,
    retries: AtomicU64,
    commit_failures: AtomicU64,
    deleted: AtomicU64,
}

/// Reads messages from a [`MessageSource`] and applies each through an [`InboxStore`] and an
/// [`InboxHandler`], once per event id. See the [module docs](self) for the guarantees.
///
/// ```no_run
/// # async fn demo<S, M, H>(store: S, source: M, handler: H) -> Result<(), outbox_core::inbox::InboxError>
/// # where S: outbox_core::inbox::InboxStore, M: outbox_core::inbox::MessageSource,
/// #       H: outbox_core::inbox::InboxHandler<S::Connection> {
/// use outbox_core::inbox::{InboxConfig, InboxConsumer};
/// use outbox_core::CancellationToken;
///
/// let consumer = InboxConsumer::new(store, source, handler, InboxConfig::default());
/// let shutdown = CancellationToken::new();
/// // on SIGTERM: shutdown.cancel() — the consumer finishes (or abandons) the message in hand and returns
/// consumer.run(shutdown).await?;
/// println!("{:?}", consumer.stats());
/// # Ok(()) }
/// ```
pub struct InboxConsumer<S, M, H> {
    store: S,
    source: M,
    handler: H,
    config: InboxConfig,
    counters: Counters,
}

impl<S, M, H> InboxConsumer<S, M, H>
where
    S: InboxStore,
    M: MessageSource,
    H: InboxHandler<S::Connection>,
{
    /// A consumer of `source` that records in `store` and applies with `handler`.
    pub fn new(store: S, source: M, handler: H, config: InboxConfig) -> Self {
        InboxConsumer {
            store,
            source,
            handler,
            config,
            counters: Counters::default(),
        }
    }

    /// What the consumer did so far.
    pub fn stats(&self) -> InboxStats {
        let c = &self.counters;
        InboxStats {
            processed: c.processed.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            commit_failures: c.commit_failures.load(Ordering::Relaxed),
            deleted: c.deleted.load(Ordering::Relaxed),
        }
    }

    /// The store, e.g. to look at what it recorded.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs until `shutdown` is cancelled. A message whose processing is interrupted by shutdown (while it
    /// waits for a retry or for the database to come back) is left uncommitted and is delivered again later.
    ///
    /// # Errors
    /// Only failures retrying cannot fix, such as a missing migration. Database and broker outages are
    /// logged and waited out.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), InboxError> {
        info!("inbox consumer started");
        let mut source_failures = 0u32;
        let mut cleanup_due = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if self.config.retention.is_some() && tokio::time::Instant::now() >= cleanup_due {
                self.cleanup().await;
                cleanup_due = tokio::time::Instant::now() + self.config.cleanup_interval;
            }
            let next = tokio::select! {
                next = self.source.next() => next,
                _ = shutdown.cancelled() => break,
                _ = sleep_until_opt(self.config.retention.map(|_| cleanup_due)) => continue,
            };
            let message = match next {
                Ok(message) => {
                    source_failures = 0;
                    message
                }
                Err(e) => {
                    source_failures += 1;
                    let delay = self.config.outage_backoff.delay(source_failures);
                    warn!(error = %e, retry_in = ?delay, "message source failed; retrying");
                    if self.pause(delay, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            let span = info_span!(
                "outbox.inbox.deliver",
                event_id = %message.event_id,
                topic = %message.topic,
                partition = message.partition,
                offset = message.offset
            );
            #[cfg(feature = "opentelemetry")]
            if let Some(parent) = message.trace_context() {
                use tracing_opentelemetry::OpenTelemetrySpanExt;
                let _ = span.set_parent(parent);
            }
            if self
                .deliver(&message, &shutdown)
                .instrument(span)
                .await?
                .is_none()
            {
                break;
            }
        }
        info!(stats = ?self.stats(), "inbox consumer stopped");
        Ok(())
    }

    /// Processes one message to its end (retries and all) and commits its offset. `None` when shutdown came
    /// first; then the offset is not committed.
    async fn deliver(
        &self,
        message: &InboxMessage,
        shutdown: &CancellationToken,
    ) -> Result<Option<InboxOutcome>, InboxError> {
        let c = &self.counters;
        let outcome = if let Some(problem) = message.id_problem() {
            warn!(topic = %message.topic, partition = message.partition, offset = message.offset,
                "parking a message without a usable event id: {problem}");
            match self.park(message, 0, problem, shutdown).await? {
                Some(_) => InboxOutcome::Parked,
                None => return Ok(None),
            }
        } else {
            let mut attempt = 1u32;
            let mut outages = 0u32;
            loop {
                match self.store.process(message, attempt, &self.handler).await {
                    Ok(Attempt::Processed) => break InboxOutcome::Processed,
                    Ok(Attempt::Duplicate) => break InboxOutcome::Duplicate,
                    Ok(Attempt::Failed(error)) => {
                        let error = error.to_string();
                        if attempt >= self.config.max_attempts {
                            warn!(event_id = %message.event_id, topic = %message.topic, partition = message.partition,
                                offset = message.offset, attempts = attempt, %error, "handler failed for the last time; parking the message");
                            match self.park(message, attempt, &error, shutdown).await? {
                                Some(true) => break InboxOutcome::Parked,
                                // Recorded meanwhile by another consumer of the group.
                                Some(false) => break InboxOutcome::Duplicate,
                                None => return Ok(None),
                            }
                        }
                        let delay = self.config.retry.delay(attempt);
                        warn!(event_id = %message.event_id, topic = %message.topic, attempts = attempt,
                            retry_in = ?delay, %error, "handler failed; will retry");
                        c.retries.fetch_add(1, Ordering::Relaxed);
                        attempt += 1;
                        if self.pause(delay, shutdown).await {
                            return Ok(None);
                        }
                    }
                    Err(e) if e.is_transient() => {
                        outages += 1;
                        let delay = self.config.outage_backoff.delay(outages);
                        warn!(error = %e, retry_in = ?delay, "inbox store failed; retrying");
                        if self.pause(delay, shutdown).await {
                            return Ok(None);
                        }
                    }
                    Err(e) => return Err(InboxError::Store(e)),
                }
            }
        };
        match outcome {
            InboxOutcome::Processed => &c.processed,
            InboxOutcome::Duplicate => &c.duplicates,
            InboxOutcome::Parked => &c.parked,
        }
        .fetch_add(1, Ordering::Relaxed);
        debug!(event_id = %message.event_id, topic = %message.topic, partition = message.partition,
            offset = message.offset, ?outcome, "message done");
        if let Err(e) = self.source.commit(message).await {
            // Harmless for correctness: the message is recorded, a redelivery is skipped as a duplicate, and
            // the next commit of the partition covers this offset too.
            warn!(error = %e, topic = %message.topic, partition = message.partition, offset = message.offset,
                "offset commit failed");
            c.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(outcome))
    }

    /// Parks, waiting out store outages. `None` on shutdown.
    async fn park(
        &self,
        message: &InboxMessage,
        attempts: u32,
        error: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<bool>, InboxError> {
        let mut outages = 0u32;
        loop {
            match self.store.park(message, attempts, error).await {
                Ok(parked) => return Ok(Some(parked)),
                Err(e) if e.is_transient() => {
                    outages += 1;
                    let delay = self.config.outage_backoff.delay(outages);
                    warn!(error = %e, retry_in = ?delay, "inbox store failed while parking; retrying");
                    if self.pause(delay, shutdown).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(InboxError::Store(e)),
            }
        }
    }

    /// Sleeps; `true` when shutdown came first.
    async fn pause(&self, delay: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = sleep(delay) => false,
            _ = shutdown.cancelled() => true,
        }
    }

    async fn cleanup(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        loop {
            match self
                .store
                .delete_processed(retention, self.config.cleanup_batch)
                .await
            {
                Ok(n) => {
                    self.counters.deleted.fetch_add(n, Ordering::Relaxed);
                    if (n as usize) < self.config.cleanup_batch {
                        debug!(deleted = n, "inbox retention cleanup done");
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "inbox retention cleanup failed");
                    return;
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use super::*;

    /// Status, attempts, error.
    type Record = (String, u32, Option<String>);

    /// A store whose "database" is a map of recorded ids and a list of side effects.
    #[derive(Default)]
    struct TestStore {
        recorded: Mutex<HashMap<Uuid, Record>>,
        effects: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl InboxStore for TestStore {
        type Connection = Vec<String>;

        async fn process(
            &self,
            message: &InboxMessage,
            attempt: u32,
            handler: &dyn InboxHandler<Vec<String>>,
        ) -> Result<Attempt, StoreError> {
            if self
                .recorded
                .lock()
                .unwrap()
                .contains_key(&message.event_id)
            {
                return Ok(Attempt::Duplicate);
            }
            let mut tx = Vec::new();
            match handler.handle(&mut tx, message).await {
                Ok(()) => {
                    self.recorded
                        .lock()
                        .unwrap()
                        .insert(message.event_id, ("processed".into(), attempt, None));
                    self.effects.lock().unwrap().extend(tx);
                    Ok(Attempt::Processed)
                }
                Err(e) => Ok(Attempt::Failed(e)),
            }
        }

        async fn park(
            &self,
            message: &InboxMessage,
            attempts: u32,
            error: &str,
        ) -> Result<bool, StoreError> {
            let mut recorded = self.recorded.lock().unwrap();
            if recorded.contains_key(&message.event_id) {
                return Ok(false);
            }
            recorded.insert(
                message.event_id,
                ("parked".into(), attempts, Some(error.into())),
            );
            Ok(true)
        }

        async fn delete_processed(&self, _: Duration, _: usize) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    /// Delivers a fixed list, then cancels `done`; records commits.
    struct ListSource {
        messages: Mutex<VecDeque<InboxMessage>>,
        commits: Mutex<Vec<i64>>,
        done: CancellationToken,
    }

    #[async_trait]
    impl MessageSource for ListSource {
        async fn next(&self) -> Result<InboxMessage, SourceError> {
            let next = self.messages.lock().unwrap().pop_front();
            match next {
                Some(m) => Ok(m),
                None => {
                    self.done.cancel();
                    std::future::pending().await
                }
            }
        }

        async fn commit(&self, message: &InboxMessage) -> Result<(), SourceError> {
            self.commits.lock().unwrap().push(message.offset);
            Ok(())
        }
    }

    /// Writes the payload as a side effect; fails on payload "bad".
    struct Echo;

    #[async_trait]
    impl InboxHandler<Vec<String>> for Echo {
        async fn handle(
            &self,
            conn: &mut Vec<String>,
            message: &InboxMessage,
        ) -> Result<(), HandlerError> {
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            if text == "bad" {
                return Err("bad payload".into());
            }
            conn.push(text);
            Ok(())
        }
    }

    fn message(offset: i64, id: Option<Uuid>, payload: &str) -> InboxMessage {
        let headers = id
            .map(|id| vec![(EVENT_ID_HEADER.to_owned(), id.to_string().into_bytes())])
            .unwrap_or_default();
        InboxMessage::new("t", 0, offset, None, payload.as_bytes().to_vec(), headers)
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_skipped_failures_parked_and_every_offset_committed() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let done = CancellationToken::new();
        let source = ListSource {
            messages: Mutex::new(VecDeque::from([
                message(0, Some(a), "one"),
                message(1, Some(a), "one again"),
                message(2, Some(b), "bad"),
                message(3, None, "anonymous"),
                message(4, Some(Uuid::now_v7()), "two"),
            ])),
            commits: Mutex::new(Vec::new()),
            done: done.clone(),
        };
        let config = InboxConfig {
            max_attempts: 3,
            ..InboxConfig::default()
        };
        let consumer = InboxConsumer::new(TestStore::default(), source, Echo, config);
        consumer.run(done).await.unwrap();

        let stats = consumer.stats();
        assert_eq!(stats.processed, 2);
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.parked, 2);
        assert_eq!(stats.retries, 2, "3 attempts: 2 retries, then parked");
        assert_eq!(
            *consumer.store.effects.lock().unwrap(),
            vec!["one".to_string(), "two".to_string()]
        );
        assert_eq!(
            *consumer.source.commits.lock().unwrap(),
            vec![0, 1, 2, 3, 4]
        );
        let recorded = consumer.store.recorded.lock().unwrap();
        assert_eq!(
            recorded[&b],
            ("parked".into(), 3, Some("bad payload".into()))
        );
        let anonymous = position_id("t", 0, 3);
        assert_eq!(
            recorded[&anonymous],
            ("parked".into(), 0, Some("no event-id header".into()))
        );
    }

    #[test]
    fn position_ids_are_stable_and_distinct() {
        assert_eq!(position_id("t", 0, 1), position_id("t", 0, 1));
        assert_ne!(position_id("t", 0, 1), position_id("t", 0, 2));
        assert_ne!(position_id("t", 0, 1), position_id("t", 1, 1));
        assert_ne!(position_id("t", 0, 1), position_id("u", 0, 1));
        let bad = InboxMessage::new(
            "t",
            0,
            1,
            None,
            vec![],
            vec![(EVENT_ID_HEADER.into(), b"nope".to_vec())],
        );
        assert_eq!(bad.id_problem(), Some("event-id header is not a UUID"));
        assert_eq!(bad.event_id, position_id("t", 0, 1));
    }
}
