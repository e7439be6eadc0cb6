//! Helpers shared by the end-to-end tests: a pool, a fresh outbox table per test, a relay in the background.
#![allow(dead_code, missing_docs, unused_imports)]

use std::time::Duration;

use outbox_core::{Relay, RelayConfig, RelayStats};
use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
use outbox_postgres::{PgOutbox, PgOutboxConfig, PgStore, TableName};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use outbox_examples::{database_url, kafka_brokers};

pub async fn pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database_url())
        .await
        .expect("connect to PostgreSQL at DATABASE_URL")
}

/// A fresh, migrated outbox table of this test's own: no other test's relay touches it.
pub async fn fresh_outbox(pool: &PgPool, name: &str) -> PgOutboxConfig {
    let config = PgOutboxConfig {
        table: TableName::new("public", &format!("outbox_{name}")).expect("valid table name"),
        ..PgOutboxConfig::default()
    };
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", config.table.quoted()))
        .execute(pool)
        .await
        .expect("drop old test table");
    outbox_postgres::migrate_with(pool, &config)
        .await
        .expect("migrate");
    config
}

/// Logging, a pool, a fresh outbox table named after the test, and its topics on the broker.
pub async fn setup(
    name: &str,
    topics: &[(&str, i32)],
) -> (PgPool, PgOutboxConfig, PgOutbox, String) {
    init_tracing();
    let pool = pool().await;
    let config = fresh_outbox(&pool, name).await;
    let outbox = outbox(&config);
    let brokers = kafka_brokers();
    outbox_examples::ensure_topics(&brokers, topics)
        .await
        .expect("topics");
    (pool, config, outbox, brokers)
}

pub fn outbox(config: &PgOutboxConfig) -> PgOutbox {
    PgOutbox::new(config.clone())
}

pub struct RunningRelay {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<RelayStats>,
}

impl RunningRelay {
    pub async fn stop(self) -> RelayStats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("relay stops within 30 s")
            .expect("relay task")
    }
}

pub fn relay_config() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

pub fn spawn_relay(
    pool: &PgPool,
    outbox: &PgOutboxConfig,
    transport: impl outbox_core::Transport + 'static,
    config: RelayConfig,
) -> RunningRelay {
    let relay = Relay::new(
        PgStore::new(pool.clone(), outbox.clone()),
        transport,
        config,
    );
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        relay.run(token).await.expect("relay run");
        relay.stats()
    });
    RunningRelay { shutdown, handle }
}

pub fn kafka(brokers: &str) -> KafkaTransport {
    KafkaTransport::new(KafkaTransportConfig::new(brokers)).expect("kafka transport")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use outbox_core::{ClaimedEvent, OutboxEvent, PublishError, Transport};
use outbox_examples::{ExpectedEvent, ReceivedMessage, TopicReader};
use serde::Serialize;
use uuid::Uuid;

/// A test event whose topic and key are chosen at run time (a hand-written `OutboxEvent`).
#[derive(Debug, Clone, Serialize)]
pub struct Ev {
    #[serde(skip)]
    pub topic: String,
    pub key: String,
    pub n: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pad: String,
}

impl Ev {
    pub fn new(topic: &str, key: &str, n: u64) -> Self {
        Ev {
            topic: topic.into(),
            key: key.into(),
            n,
            pad: String::new(),
        }
    }

    pub fn padded(topic: &str, key: &str, n: u64, bytes: usize) -> Self {
        Ev {
            topic: topic.into(),
            key: key.into(),
            n,
            pad: "x".repeat(bytes),
        }
    }
}

impl OutboxEvent for Ev {
    fn event_type(&self) -> &str {
        "test.event"
    }
    fn topic(&self) -> &str {
        &self.topic
    }
    fn aggregate_type(&self) -> &str {
        "test"
    }
    fn key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.key)
    }
    fn version(&self) -> Option<u32> {
        None
    }
}

/// Enqueues `events` in one committed transaction; returns what the consumer must see.
pub async fn commit_events(pool: &PgPool, outbox: &PgOutbox, events: &[Ev]) -> Vec<ExpectedEvent> {
    let mut tx = pool.begin().await.expect("begin");
    let mut expected = Vec::new();
    for e in events {
        let id = outbox.enqueue(&mut tx, e).await.expect("enqueue");
        expected.push(ExpectedEvent::of(id, e));
    }
    tx.commit().await.expect("commit");
    expected
}

/// Reads `topics` from the start until every id in `wanted` arrived (then a little longer, to catch duplicates)
/// or nothing arrived for `idle`.
pub async fn read_back(
    brokers: &str,
    topics: &[&str],
    wanted: &[ExpectedEvent],
    idle: Duration,
) -> Vec<ReceivedMessage> {
    let reader = TopicReader::new(brokers, topics).expect("reader");
    let wanted: HashSet<Uuid> = wanted.iter().map(|e| e.id).collect();
    let mut seen = HashSet::new();
    let mut got = reader
        .read_until(
            |all| {
                if let Some(id) = all.last().and_then(|m| m.event_id()) {
                    if wanted.contains(&id) {
                        seen.insert(id);
                    }
                }
                seen.len() == wanted.len()
            },
            idle,
        )
        .await
        .expect("read back");
    while let Some(m) = reader.next(Duration::from_millis(500)).await.expect("read") {
        got.push(m);
    }
    got
}

/// The order in which `key`'s events of this test arrived, by their `n`, first copies only.
pub fn arrival_order(
    received: &[ReceivedMessage],
    expected: &[ExpectedEvent],
    key: &str,
) -> Vec<u64> {
    let ours: HashSet<Uuid> = expected.iter().map(|e| e.id).collect();
    let mut sorted: Vec<&ReceivedMessage> = received.iter().collect();
    sorted
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let mut seen = HashSet::new();
    sorted
        .into_iter()
        .filter(|m| m.key.as_deref() == Some(key))
        .filter_map(|m| {
            m.event_id()
                .filter(|id| ours.contains(id) && seen.insert(*id))
                .map(|_| m)
        })
        .filter_map(|m| {
            m.payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        })
        .filter_map(|v| v["n"].as_u64())
        .collect()
}

/// Wraps a transport to inject faults: a delay before every publish, and rejections of chosen events. Like a
/// real transport, it never sends an event after an earlier event of its key failed in the same batch.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    pub delay: Mutex<Duration>,
    rejections: Mutex<HashMap<Uuid, u32>>,
    random_rejections: Mutex<Option<(f64, fastrand::Rng)>>,
    /// Rejections made so far.
    pub injected: AtomicU64,
}

impl FaultyTransport {
    pub fn new(inner: impl Transport + 'static) -> Arc<Self> {
        Arc::new(FaultyTransport {
            inner: Arc::new(inner),
            delay: Mutex::new(Duration::ZERO),
            rejections: Mutex::new(HashMap::new()),
            random_rejections: Mutex::new(None),
            injected: AtomicU64::new(0),
        })
    }

    pub fn slow(self: &Arc<Self>, delay: Duration) -> Arc<Self> {
        *self.delay.lock().expect("lock") = delay;
        self.clone()
    }

    /// Rejects event `id` the next `times` times it is published.
    pub fn reject(&self, id: Uuid, times: u32) {
        self.rejections.lock().expect("lock").insert(id, times);
    }

    /// Rejects each event with probability `rate` (seeded, so a failing run can be repeated).
    pub fn reject_randomly(&self, rate: f64, seed: u64) {
        *self.random_rejections.lock().expect("lock") =
            Some((rate, fastrand::Rng::with_seed(seed)));
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        let delay = *self.delay.lock().expect("lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut results: Vec<Option<Result<(), PublishError>>> = vec![None; batch.len()];
        let mut failed: HashSet<(&str, &str)> = HashSet::new();
        {
            let mut rejections = self.rejections.lock().expect("lock");
            let mut random = self.random_rejections.lock().expect("lock");
            for (i, e) in batch.iter().enumerate() {
                let key = (e.topic.as_str(), e.key.as_str());
                if failed.contains(&key) {
                    results[i] = Some(Err(PublishError::NotSent));
                    continue;
                }
                let forced = match rejections.get_mut(&e.id) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                };
                let random = random.as_mut().is_some_and(|(rate, rng)| rng.f64() < *rate);
                if forced || random {
                    self.injected.fetch_add(1, Ordering::Relaxed);
                    results[i] = Some(Err(PublishError::Rejected("injected failure".into())));
                    failed.insert(key);
                }
            }
        }
        let to_send: Vec<ClaimedEvent> = batch
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(e, _)| e.clone())
            .collect();
        let mut sent = self.inner.publish(&to_send).await.into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| sent.next().unwrap_or(Err(PublishError::NotSent))))
            .collect()
    }
}

/// Lets tests share one transport between a relay and their own assertions.
pub struct Shared<T: ?Sized>(pub Arc<T>);

#[async_trait]
impl<T: Transport + ?Sized> Transport for Shared<T> {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        self.0.publish(batch).await
    }
}

pub fn kafka_with(brokers: &str, settings: &[(&str, &str)]) -> KafkaTransport {
    let mut config = KafkaTransportConfig::new(brokers);
    for (k, v) in settings {
        config = config.set(k, v);
    }
    KafkaTransport::new(config).expect("kafka transport")
}

/// Process CPU time (user + system) so far, from /proc.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

pub async fn status_of(
    pool: &PgPool,
    config: &PgOutboxConfig,
    id: Uuid,
) -> Option<(String, i32, Option<String>)> {
    sqlx::query_as(&format!(
        "SELECT status, retry_count, last_error FROM {} WHERE id = $1",
        config.table.quoted()
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .expect("status")
}
