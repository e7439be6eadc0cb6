//! The inbox (idempotent consumer) on real PostgreSQL and the real broker (tansu): duplicates, a crash between
//! the database commit and the offset commit, per-partition order, retries then parking, retention.
//!
//! Every test has its own inbox and side-effect tables, and its own topics and consumer group (suffixed with a
//! random run id, so a rerun against the same broker starts clean). Messages are produced one per request
//! (`linger.ms=0`, each send awaited): tansu cannot start a fetch in the middle of a multi-message batch, and a
//! consumer that resumes at a committed offset must find its message at the start of a batch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{commit_events, Ev};
use outbox_core::inbox::{
    HandlerError, InboxConfig, InboxConsumer, InboxHandler, InboxMessage, InboxStore,
    MessageSource, SourceError,
};
use outbox_core::{CancellationToken, RetryPolicy};
use outbox_examples::ensure_topics;
use outbox_kafka::{KafkaSource, KafkaSourceConfig};
use outbox_postgres::{PgInbox, PgInboxConfig, TableName};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A test's own tables, topics and group.
struct Setup {
    pool: PgPool,
    inbox: PgInbox,
    effects: String,
    brokers: String,
    run: String,
}

impl Setup {
    async fn new(name: &str) -> Self {
        common::init_tracing();
        let pool = common::pool().await;
        let config = PgInboxConfig {
            table: TableName::new("public", &format!("inbox_{name}")).expect("table name"),
        };
        let effects = TableName::new("public", &format!("inbox_{name}_effects"))
            .expect("table name")
            .quoted();
        sqlx::raw_sql(&format!(
            "DROP TABLE IF EXISTS {inbox}; DROP TABLE IF EXISTS {effects}; \
             CREATE TABLE {effects} (seq bigserial PRIMARY KEY, event_id uuid NOT NULL, msg_key text, n bigint);",
            inbox = config.table.quoted()
        ))
        .execute(&pool)
        .await
        .expect("fresh tables");
        outbox_postgres::migrate_inbox_with(&pool, &config)
            .await
            .expect("migrate inbox");
        let inbox = PgInbox::new(pool.clone(), config);
        inbox.check_schema().await.expect("inbox schema");
        Setup {
            pool,
            inbox,
            effects,
            brokers: common::kafka_brokers(),
            run: Uuid::new_v4().simple().to_string()[..8].to_owned(),
        }
    }

    /// A topic of this test and run, created with `partitions`.
    async fn topic(&self, name: &str, partitions: i32) -> String {
        let topic = format!("inbox.{name}.{}", self.run);
        ensure_topics(&self.brokers, &[(&topic, partitions)])
            .await
            .expect("topic");
        topic
    }

    fn source(&self, group: &str, topics: &[&str]) -> KafkaSource {
        KafkaSource::new(
            KafkaSourceConfig::new(&self.brokers, &format!("{group}-{}", self.run)),
            topics,
        )
        .expect("kafka source")
    }

    fn handler(&self) -> RecordEffect {
        RecordEffect {
            insert: format!(
                "INSERT INTO {} (event_id, msg_key, n) VALUES ($1, $2, $3)",
                self.effects
            ),
        }
    }

    /// How many side effects the handler left for `event_id`.
    async fn effects_of(&self, event_id: Uuid) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE event_id = $1",
            self.effects
        ))
        .bind(event_id)
        .fetch_one(&self.pool)
        .await
        .expect("count effects")
    }

    /// The inbox row of `event_id`: status, attempts, last error.
    async fn inbox_row(&self, event_id: Uuid) -> Option<(String, i32, Option<String>)> {
        sqlx::query_as(&format!(
            "SELECT status, attempts, last_error FROM {} WHERE event_id = $1",
            self.inbox.config().table.quoted()
        ))
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await
        .expect("inbox row")
    }
}

/// Writes one row per message into the test's effects table, on the inbox's transaction; fails for payloads
/// with `"fail": true`.
struct RecordEffect {
    insert: String,
}

#[async_trait]
impl InboxHandler<PgConnection> for RecordEffect {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &InboxMessage,
    ) -> Result<(), HandlerError> {
        let body: serde_json::Value = message.payload_json()?;
        if body["fail"].as_bool() == Some(true) {
            return Err(format!("cannot handle n={}", body["n"]).into());
        }
        let key = message
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        sqlx::query(&self.insert)
            .bind(message.event_id)
            .bind(key)
            .bind(body["n"].as_i64())
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A producer that sends one message per request and waits for each acknowledgement.
struct Producer(FutureProducer);

impl Producer {
    fn new(brokers: &str) -> Self {
        Producer(
            ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("linger.ms", "0")
                .set("acks", "all")
                .create()
                .expect("producer"),
        )
    }

    /// Sends `payload` with key `key` and, when given, an `event-id` header; returns (partition, offset).
    async fn send(
        &self,
        topic: &str,
        key: &str,
        event_id: Option<Uuid>,
        payload: serde_json::Value,
    ) -> (i32, i64) {
        let payload = payload.to_string();
        let id = event_id.map(|id| id.to_string());
        let mut headers = OwnedHeaders::new();
        if let Some(id) = &id {
            headers = headers.insert(Header {
                key: outbox_kafka::headers::EVENT_ID,
                value: Some(id.as_str()),
            });
        }
        let delivery = self
            .0
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        (delivery.partition, delivery.offset)
    }
}

type Consumer<S> = InboxConsumer<PgInbox, S, RecordEffect>;

struct Running<S> {
    consumer: Arc<Consumer<S>>,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

fn spawn<S: MessageSource + 'static>(consumer: Consumer<S>) -> Running<S> {
    let consumer = Arc::new(consumer);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn({
        let consumer = consumer.clone();
        let shutdown = shutdown.clone();
        async move { consumer.run(shutdown).await.expect("inbox consumer run") }
    });
    Running {
        consumer,
        shutdown,
        handle,
    }
}

impl<S: MessageSource + 'static> Running<S> {
    /// Waits until `done` holds for the stats, or panics after `timeout` saying what it waited for.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&outbox_core::inbox::InboxStats) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.consumer.stats()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; stats: {:?}",
                self.consumer.stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> outbox_core::inbox::InboxStats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("consumer stops within 30 s")
            .expect("consumer task");
        self.consumer.stats()
    }
}

fn quick_retries(max_attempts: u32) -> InboxConfig {
    InboxConfig {
        max_attempts,
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..InboxConfig::default()
    }
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i01_a_duplicate_delivery_runs_the_handler_once() {
    let s = Setup::new("i01").await;
    let topic = s.topic("i01", 1).await;
    let producer = Producer::new(&s.brokers);
    let (twice, once) = (Uuid::now_v7(), Uuid::now_v7());
    producer
        .send(&topic, "a", Some(twice), serde_json::json!({ "n": 1 }))
        .await;
    producer
        .send(&topic, "a", Some(twice), serde_json::json!({ "n": 1 }))
        .await;
    producer
        .send(&topic, "a", Some(once), serde_json::json!({ "n": 2 }))
        .await;

    let running = spawn(InboxConsumer::new(
        s.inbox.clone(),
        s.source("i01", &[&topic]),
        s.handler(),
        InboxConfig::default(),
    ));
    running
        .wait_for("2 processed and 1 duplicate", WAIT, |st| {
            st.processed == 2 && st.duplicates == 1
        })
        .await;
    let stats = running.stop().await;
    assert_eq!((stats.processed, stats.duplicates, stats.parked), (2, 1, 0));
    assert_eq!(s.effects_of(twice).await, 1, "the handler ran once");
    assert_eq!(s.effects_of(once).await, 1);
    assert_eq!(
        s.inbox_row(twice).await.map(|r| r.0).as_deref(),
        Some("processed")
    );
}

/// Passes everything through, except that the commit of one chosen event never happens: it signals and hangs,
/// as if the process died between the database commit and the offset commit.
struct CrashBeforeCommit {
    inner: KafkaSource,
    crash_on: Uuid,
    crashed: Arc<Notify>,
}

#[async_trait]
impl MessageSource for CrashBeforeCommit {
    async fn next(&self) -> Result<InboxMessage, SourceError> {
        self.inner.next().await
    }

    async fn commit(&self, message: &InboxMessage) -> Result<(), SourceError> {
        if message.event_id == self.crash_on {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.commit(message).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i02_a_crash_between_database_commit_and_offset_commit_does_not_run_the_handler_twice() {
    let s = Setup::new("i02").await;
    let topic = s.topic("i02", 1).await;
    let producer = Producer::new(&s.brokers);
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (n, id) in ids.iter().take(2).enumerate() {
        producer
            .send(&topic, "k", Some(*id), serde_json::json!({ "n": n }))
            .await;
    }

    // The first consumer handles both messages, commits the first offset, and "dies" before committing the
    // second.
    let crashed = Arc::new(Notify::new());
    let first = spawn(InboxConsumer::new(
        s.inbox.clone(),
        CrashBeforeCommit {
            inner: s.source("i02", &[&topic]),
            crash_on: ids[1],
            crashed: crashed.clone(),
        },
        s.handler(),
        InboxConfig::default(),
    ));
    tokio::time::timeout(WAIT, crashed.notified())
        .await
        .expect("the first consumer reaches the second commit");
    assert_eq!(first.consumer.stats().processed, 2);
    first.handle.abort();
    let _ = first.handle.await;
    drop(first.consumer); // closes the Kafka consumer: it leaves the group

    // A fresh member of the same group resumes at the committed offset: it reads the second message again,
    // which the inbox skips, then goes on.
    producer
        .send(&topic, "k", Some(ids[2]), serde_json::json!({ "n": 2 }))
        .await;
    let second = spawn(InboxConsumer::new(
        s.inbox.clone(),
        s.source("i02", &[&topic]),
        s.handler(),
        InboxConfig::default(),
    ));
    second
        .wait_for("the third message", WAIT, |st| st.processed == 1)
        .await;
    let stats = second.stop().await;
    assert_eq!(
        stats.duplicates, 1,
        "only the uncommitted message is read again: the group's committed offset was used"
    );
    for id in &ids {
        assert_eq!(s.effects_of(*id).await, 1, "one side effect for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i03_per_partition_order_is_kept_end_to_end_from_the_outbox() {
    let s = Setup::new("i03").await;
    let topic = s.topic("i03", 3).await;
    // The events come from the outbox through the relay, as in production.
    let outbox_config = common::fresh_outbox(&s.pool, "i03").await;
    let outbox = common::outbox(&outbox_config);
    let keys = ["a", "b", "c", "d"];
    let per_key = 40u64;
    let mut events = Vec::new();
    for n in 0..per_key {
        for key in keys {
            events.push(Ev::new(&topic, key, n));
        }
    }
    for chunk in events.chunks(20) {
        commit_events(&s.pool, &outbox, chunk).await;
    }
    let relay = common::spawn_relay(
        &s.pool,
        &outbox_config,
        common::kafka(&s.brokers),
        common::relay_config(),
    );

    let running = spawn(InboxConsumer::new(
        s.inbox.clone(),
        s.source("i03", &[&topic]),
        s.handler(),
        InboxConfig::default(),
    ));
    let total = per_key * keys.len() as u64;
    running
        .wait_for("every event", WAIT, |st| st.processed == total)
        .await;
    let stats = running.stop().await;
    relay.stop().await;
    assert_eq!(stats.duplicates, 0);
    for key in keys {
        let seen: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT n FROM {} WHERE msg_key = $1 ORDER BY seq",
            s.effects
        ))
        .bind(key)
        .fetch_all(&s.pool)
        .await
        .expect("effects");
        let want: Vec<i64> = (0..per_key as i64).collect();
        assert_eq!(seen, want, "key {key} handled in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i04_a_failing_handler_is_retried_then_parked_and_the_partition_moves_on() {
    let s = Setup::new("i04").await;
    let topic = s.topic("i04", 1).await;
    let producer = Producer::new(&s.brokers);
    let (failing, next) = (Uuid::now_v7(), Uuid::now_v7());
    let (_, anonymous_offset) = producer
        .send(&topic, "k", None, serde_json::json!({ "n": 0 }))
        .await;
    producer
        .send(
            &topic,
            "k",
            Some(failing),
            serde_json::json!({ "n": 1, "fail": true }),
        )
        .await;
    producer
        .send(&topic, "k", Some(next), serde_json::json!({ "n": 2 }))
        .await;

    let running = spawn(InboxConsumer::new(
        s.inbox.clone(),
        s.source("i04", &[&topic]),
        s.handler(),
        quick_retries(3),
    ));
    running
        .wait_for("2 parked and 1 processed", WAIT, |st| {
            st.parked == 2 && st.processed == 1
        })
        .await;
    let stats = running.stop().await;
    assert_eq!(stats.retries, 2, "3 attempts: the first and 2 retries");

    let (status, attempts, error) = s.inbox_row(failing).await.expect("parked row");
    assert_eq!((status.as_str(), attempts), ("parked", 3));
    assert_eq!(error.as_deref(), Some("cannot handle n=1"));
    assert_eq!(
        s.effects_of(failing).await,
        0,
        "its writes were rolled back"
    );
    assert_eq!(s.effects_of(next).await, 1, "the next message was handled");

    let parked = s.inbox.parked(10).await.expect("parked");
    assert_eq!(parked.len(), 2);
    let anonymous = parked
        .iter()
        .find(|p| p.offset == anonymous_offset)
        .expect("the message without an event id is parked");
    assert_eq!(anonymous.error.as_deref(), Some("no event-id header"));
    assert_eq!(anonymous.attempts, 0);
    let failed = parked
        .iter()
        .find(|p| p.event_id == failing)
        .expect("listed");
    let payload: serde_json::Value =
        serde_json::from_slice(failed.payload.as_deref().expect("payload kept")).expect("json");
    assert_eq!(
        payload,
        serde_json::json!({ "n": 1, "fail": true }),
        "the payload is kept for an operator"
    );
}

/// A source with nothing to deliver, for a consumer that only runs its retention cleanup.
struct Idle;

#[async_trait]
impl MessageSource for Idle {
    async fn next(&self) -> Result<InboxMessage, SourceError> {
        std::future::pending().await
    }

    async fn commit(&self, _: &InboxMessage) -> Result<(), SourceError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i05_retention_deletes_old_processed_records_in_bounded_batches() {
    let s = Setup::new("i05").await;
    let handler = s.handler();
    let message = |n: i64, id: Uuid| {
        InboxMessage::new(
            "i05",
            0,
            n,
            None,
            serde_json::json!({ "n": n }).to_string().into_bytes(),
            vec![("event-id".into(), id.to_string().into_bytes())],
        )
    };
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    for (n, id) in ids.iter().enumerate() {
        s.inbox
            .process(&message(n as i64, *id), 1, &handler)
            .await
            .expect("process");
    }
    let parked = Uuid::now_v7();
    assert!(s
        .inbox
        .park(&message(30, parked), 5, "broken")
        .await
        .expect("park"));
    // Age 25 processed records and the parked one by two hours.
    let table = s.inbox.config().table.quoted();
    sqlx::query(&format!(
        "UPDATE {table} SET recorded_at = now() - interval '2 hours' WHERE event_id = ANY($1) OR event_id = $2"
    ))
    .bind(&ids[..25])
    .bind(parked)
    .execute(&s.pool)
    .await
    .expect("age rows");

    // One statement deletes at most its batch.
    assert_eq!(
        s.inbox
            .delete_processed(Duration::from_secs(3600), 10)
            .await
            .expect("delete"),
        10
    );
    // The consumer's cleanup deletes the rest in batches of 10.
    let running = spawn(InboxConsumer::new(
        s.inbox.clone(),
        Idle,
        s.handler(),
        InboxConfig {
            retention: Some(Duration::from_secs(3600)),
            cleanup_batch: 10,
            ..InboxConfig::default()
        },
    ));
    running
        .wait_for("15 deleted", Duration::from_secs(10), |st| st.deleted == 15)
        .await;
    running.stop().await;

    let left: Vec<(Uuid, String)> = sqlx::query_as(&format!(
        "SELECT event_id, status FROM {table} ORDER BY event_id"
    ))
    .fetch_all(&s.pool)
    .await
    .expect("rows");
    let mut want: Vec<(Uuid, String)> = ids[25..]
        .iter()
        .map(|id| (*id, "processed".to_string()))
        .collect();
    want.push((parked, "parked".into()));
    want.sort();
    assert_eq!(
        left, want,
        "recent processed records and parked ones are kept"
    );
}

/// A handler that ignores a failed statement and returns Ok leaves its transaction aborted: that is a failure,
/// not a processed message whose effects and inbox record silently vanished.
struct SwallowsErrors {
    effects: String,
}

#[async_trait::async_trait]
impl InboxHandler<sqlx::PgConnection> for SwallowsErrors {
    async fn handle(
        &self,
        conn: &mut sqlx::PgConnection,
        message: &InboxMessage,
    ) -> Result<(), HandlerError> {
        sqlx::query(&format!(
            "INSERT INTO {} (event_id, n) VALUES ($1, 1)",
            self.effects
        ))
        .bind(message.event_id)
        .execute(&mut *conn)
        .await?;
        // "Already there? Never mind": the error is dropped, the transaction is now aborted.
        let _ = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut *conn)
            .await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i06_a_handler_that_swallows_a_database_error_fails_instead_of_losing_the_message() {
    let s = Setup::new("i06").await;
    let id = Uuid::now_v7();
    let message = InboxMessage::new(
        "i06",
        0,
        0,
        None,
        b"{}".to_vec(),
        vec![("event-id".into(), id.to_string().into_bytes())],
    );
    let handler = SwallowsErrors {
        effects: s.effects.clone(),
    };
    let attempt = s
        .inbox
        .process(&message, 1, &handler)
        .await
        .expect("process");
    match attempt {
        outbox_core::inbox::Attempt::Failed(error) => {
            assert!(error.to_string().contains("aborted"), "{error}")
        }
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    let recorded: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}",
        s.inbox.config().table.quoted()
    ))
    .fetch_one(&s.pool)
    .await
    .expect("count");
    assert_eq!(
        recorded, 0,
        "nothing recorded, so the message will be retried, then parked"
    );
}
