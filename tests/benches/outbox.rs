//! The outbox benchmark: every measure is a ratio against a raw baseline measured in the same run, on the same
//! PostgreSQL and broker. Run it with `scripts/bench.sh` (or `--quick`), which starts the services and writes
//! BENCHMARKS.md; by hand: `cargo bench -p outbox-tests --bench outbox -- [--quick]` with DATABASE_URL and
//! KAFKA_BROKERS set. The last line printed is one JSON object with every figure.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outbox_core::{ClaimedEvent, OutboxEvent, PublishError, Relay, RelayConfig, Transport};
use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
use outbox_postgres::{PgOutbox, PgOutboxConfig, PgStore, TableName};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PAYLOAD_1K: usize = 1_000;

#[derive(Serialize)]
struct Payment<'a> {
    #[serde(skip)]
    key: String,
    amount: u64,
    note: &'a str,
}

impl OutboxEvent for Payment<'_> {
    fn event_type(&self) -> &str {
        "payment.captured.v1"
    }
    fn topic(&self) -> &str {
        "bench.payments"
    }
    fn aggregate_type(&self) -> &str {
        "account"
    }
    fn key(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.key)
    }
    fn version(&self) -> Option<u32> {
        None
    }
}

struct Sizes {
    enqueue_secs: f64,
    drain_backlog: u64,
    small_backlog: u64,
    big_backlog: u64,
    latency_secs: u64,
    naive_secs: f64,
}

fn config(table: &str) -> PgOutboxConfig {
    PgOutboxConfig {
        table: TableName::new("public", table).expect("name"),
        ..PgOutboxConfig::default()
    }
}

async fn fresh(pool: &PgPool, cfg: &PgOutboxConfig) {
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", cfg.table.quoted()))
        .execute(pool)
        .await
        .expect("drop");
    outbox_postgres::migrate_with(pool, cfg)
        .await
        .expect("migrate");
}

/// The raw baseline's insert: the same columns and bytes into a table of the same schema, without the key lock
/// and the wake-up notification.
fn raw_insert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, payload, headers) \
         VALUES ($1, $2, $3, $4, $3, $5, $6, $7::text::jsonb, $8::text::jsonb)"
    )
}

fn raw_insert_many_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, payload, headers) \
         SELECT id, topic, event_key, aggregate_type, event_key, event_type, event_version, payload::jsonb, headers::jsonb \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::text[]) \
           AS i(id, topic, event_key, aggregate_type, event_type, event_version, payload, headers)"
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Writer {
    Outbox,
    Raw,
}

/// Business transactions per second: update an account, write its event, commit.
async fn enqueue_rate(
    pool: &PgPool,
    outbox: &PgOutbox,
    raw_table: &str,
    conns: usize,
    secs: f64,
    writer: Writer,
) -> f64 {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let count = Arc::new(AtomicU64::new(0));
    let note = "x".repeat(200);
    let raw_sql = Arc::new(raw_insert_sql(raw_table));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (pool, outbox, count, note, raw_sql) = (
            pool.clone(),
            outbox.clone(),
            count.clone(),
            note.clone(),
            raw_sql.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c as u64;
            while Instant::now() < stop {
                let account = (i * 7919) % 10_000;
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("UPDATE bench_accounts SET balance = balance + 1 WHERE id = $1")
                    .bind(account as i64)
                    .execute(&mut *tx)
                    .await
                    .expect("update");
                let event = Payment {
                    key: account.to_string(),
                    amount: i,
                    note: &note,
                };
                match writer {
                    Writer::Outbox => {
                        outbox.enqueue(&mut tx, &event).await.expect("enqueue");
                    }
                    Writer::Raw => {
                        let payload = serde_json::to_string(&event).expect("json");
                        sqlx::query(&raw_sql)
                            .bind(Uuid::now_v7())
                            .bind(event.topic())
                            .bind(event.key().as_ref())
                            .bind(event.aggregate_type())
                            .bind(event.event_type())
                            .bind(None::<i32>)
                            .bind(payload)
                            .bind("[]")
                            .execute(&mut *tx)
                            .await
                            .expect("raw insert");
                    }
                }
                tx.commit().await.expect("commit");
                count.fetch_add(1, Ordering::Relaxed);
                i += conns as u64;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    count.load(Ordering::Relaxed) as f64 / secs
}

/// Alternates outbox and raw rounds so that drift on a shared machine hits both alike.
async fn enqueue_ratio(pool: &PgPool, conns: usize, secs: f64, notify: bool) -> (f64, f64) {
    let out_cfg = PgOutboxConfig {
        notify,
        ..config("bench_enqueue")
    };
    let raw_cfg = config("bench_enqueue_raw");
    let outbox = PgOutbox::new(out_cfg.clone());
    let (mut outbox_total, mut raw_total) = (0.0, 0.0);
    for round in 0..4 {
        fresh(pool, &out_cfg).await;
        fresh(pool, &raw_cfg).await;
        let order = if round % 2 == 0 {
            [Writer::Outbox, Writer::Raw]
        } else {
            [Writer::Raw, Writer::Outbox]
        };
        for w in order {
            let rate =
                enqueue_rate(pool, &outbox, &raw_cfg.table.quoted(), conns, secs / 4.0, w).await;
            if w == Writer::Outbox {
                outbox_total += rate
            } else {
                raw_total += rate
            }
        }
    }
    (outbox_total / 4.0, raw_total / 4.0)
}

async fn batch_enqueue_ratio(pool: &PgPool, secs: f64) -> (f64, f64) {
    let out_cfg = config("bench_batch");
    let raw_cfg = config("bench_batch_raw");
    let outbox = PgOutbox::new(out_cfg.clone());
    let raw_sql = raw_insert_many_sql(&raw_cfg.table.quoted());
    let note = "x".repeat(200);
    let (mut out_n, mut raw_n, mut out_t, mut raw_t) = (0u64, 0u64, 0f64, 0f64);
    fresh(pool, &out_cfg).await;
    fresh(pool, &raw_cfg).await;
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut round = 0u64;
    while Instant::now() < stop {
        let events: Vec<Payment<'_>> = (0..1_000)
            .map(|i| Payment {
                key: format!("{}", (round * 1000 + i) % 5_000),
                amount: i,
                note: &note,
            })
            .collect();
        let messages: Vec<outbox_core::NewMessage> = events
            .iter()
            .map(|e| outbox_core::NewMessage::from_event(e).expect("encode"))
            .collect();
        for w in if round.is_multiple_of(2) {
            [Writer::Outbox, Writer::Raw]
        } else {
            [Writer::Raw, Writer::Outbox]
        } {
            let started = Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            match w {
                Writer::Outbox => {
                    outbox
                        .enqueue_all(&mut tx, &events)
                        .await
                        .expect("enqueue_all");
                }
                Writer::Raw => {
                    let (ids, topics, keys, aggs, types, versions, payloads, headers) =
                        columns(&messages);
                    sqlx::query(&raw_sql)
                        .bind(ids)
                        .bind(topics)
                        .bind(keys)
                        .bind(aggs)
                        .bind(types)
                        .bind(versions)
                        .bind(payloads)
                        .bind(headers)
                        .execute(&mut *tx)
                        .await
                        .expect("raw insert");
                }
            }
            tx.commit().await.expect("commit");
            let took = started.elapsed().as_secs_f64();
            if w == Writer::Outbox {
                out_n += 1000;
                out_t += took
            } else {
                raw_n += 1000;
                raw_t += took
            }
        }
        round += 1;
    }
    (out_n as f64 / out_t, raw_n as f64 / raw_t)
}

#[allow(clippy::type_complexity)]
fn columns(
    m: &[outbox_core::NewMessage],
) -> (
    Vec<Uuid>,
    Vec<&str>,
    Vec<&str>,
    Vec<&str>,
    Vec<&str>,
    Vec<Option<i32>>,
    Vec<&str>,
    Vec<&str>,
) {
    (
        m.iter().map(|m| m.id).collect(),
        m.iter().map(|m| m.topic.as_str()).collect(),
        m.iter().map(|m| m.key.as_str()).collect(),
        m.iter().map(|m| m.aggregate_type.as_str()).collect(),
        m.iter().map(|m| m.event_type.as_str()).collect(),
        m.iter().map(|m| m.version.map(|v| v as i32)).collect(),
        m.iter().map(|m| m.payload.get()).collect(),
        m.iter().map(|_| "[]").collect(),
    )
}

/// Fills `table` with `n` pending events over 1,000 keys, server-side.
async fn fill_backlog(pool: &PgPool, cfg: &PgOutboxConfig, n: u64, payload: usize, topic: &str) {
    fresh(pool, cfg).await;
    let chunk = 200_000u64;
    let mut done = 0;
    while done < n {
        let take = chunk.min(n - done);
        sqlx::query(&format!(
            "INSERT INTO {} (id, topic, event_key, aggregate_type, aggregate_id, event_type, payload) \
             SELECT gen_random_uuid(), $1, 'k' || (i % 1000), 'bench', 'k' || (i % 1000), 'bench.filled.v1', \
                    jsonb_build_object('n', i, 'pad', repeat('x', $2)) \
             FROM generate_series($3::bigint, $4::bigint) AS i",
            cfg.table.quoted()
        ))
        .bind(topic)
        .bind(payload as i32)
        .bind(done as i64)
        .bind((done + take - 1) as i64)
        .execute(pool)
        .await
        .expect("fill");
        done += take;
    }
    sqlx::raw_sql(&format!("VACUUM ANALYZE {}", cfg.table.quoted()))
        .execute(pool)
        .await
        .expect("vacuum");
}

/// Acknowledges everything at once: what the store side costs alone.
struct NoopTransport;

#[async_trait]
impl Transport for NoopTransport {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        vec![Ok(()); batch.len()]
    }
}

async fn pending(pool: &PgPool, cfg: &PgOutboxConfig) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {} WHERE status = 'pending'",
        cfg.table.quoted()
    ))
    .fetch_one(pool)
    .await
    .expect("count")
}

/// Events per second for one relay (default settings) draining the whole backlog of `cfg`.
async fn drain_rate(
    pool: &PgPool,
    cfg: &PgOutboxConfig,
    transport: impl Transport + 'static,
    total: u64,
) -> f64 {
    let relay = Arc::new(Relay::new(
        PgStore::new(pool.clone(), cfg.clone()),
        transport,
        RelayConfig {
            poll_interval: Duration::from_millis(50),
            ..RelayConfig::default()
        },
    ));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = {
        let (relay, token) = (relay.clone(), shutdown.clone());
        tokio::spawn(async move { relay.run(token).await })
    };
    while relay.stats().published < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await.expect("task").expect("relay");
    assert_eq!(
        pending(pool, cfg).await,
        0,
        "the relay published the whole backlog"
    );
    rate
}

/// Fills `cfg` with `total` 1 KiB events and drains them with a transport that acknowledges at once.
async fn noop_drain_rate(pool: &PgPool, cfg: &PgOutboxConfig, total: u64) -> f64 {
    fill_backlog(pool, cfg, total, PAYLOAD_1K, "bench.drain").await;
    drain_rate(pool, cfg, NoopTransport, total).await
}

/// The raw librdkafka rate: the same messages handed to a producer at once, then every acknowledgement awaited.
async fn raw_producer_rate(brokers: &str, n: u64, payload: usize) -> f64 {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let body = serde_json::json!({ "n": 0, "pad": "x".repeat(payload) }).to_string();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = format!("k{}", i % 1000);
        let mut record = FutureRecord::to("bench.raw").key(&key).payload(&body);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for f in pending {
        f.await.expect("delivery").expect("acknowledged");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The straightforward relay: take the oldest event, publish it, await it, delete it, repeat.
async fn naive_rate(pool: &PgPool, cfg: &PgOutboxConfig, brokers: &str, secs: f64) -> f64 {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let table = cfg.table.quoted();
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while Instant::now() < stop {
        let mut tx = pool.begin().await.expect("begin");
        let row: Option<(Uuid, String, String, String)> = sqlx::query_as(&format!(
            "SELECT id, topic, event_key, payload::text FROM {table} WHERE status = 'pending' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
        ))
        .fetch_optional(&mut *tx)
        .await
        .expect("select");
        let Some((id, topic, key, payload)) = row else {
            break;
        };
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .expect("send");
        sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("delete");
        tx.commit().await.expect("commit");
        n += 1;
    }
    n as f64 / secs
}

/// Notes when the broker acknowledged each event.
struct Timed {
    inner: KafkaTransport,
    acked: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

#[async_trait]
impl Transport for Timed {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        let results = self.inner.publish(batch).await;
        let now = Instant::now();
        let mut acked = self.acked.lock().expect("lock");
        for (e, r) in batch.iter().zip(&results) {
            if r.is_ok() {
                acked.entry(e.id).or_insert(now);
            }
        }
        results
    }
}

/// Commit → acknowledgement at a steady 500 events/s with notifications on.
async fn latency(pool: &PgPool, brokers: &str, secs: u64) -> (f64, f64) {
    let cfg = config("bench_latency");
    fresh(pool, &cfg).await;
    let outbox = PgOutbox::new(cfg.clone());
    let kafka = KafkaTransport::new(KafkaTransportConfig::new(brokers).set("linger.ms", "1"))
        .expect("kafka");
    kafka
        .ready(&["bench.payments"], Duration::from_secs(10))
        .await
        .expect("ready");
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let relay = Relay::new(
        PgStore::new(pool.clone(), cfg.clone()),
        Timed {
            inner: kafka,
            acked: acked.clone(),
        },
        RelayConfig::default(),
    );
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let running = tokio::spawn(async move { relay.run(token).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut committed = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let note = "x".repeat(200);
    for i in 0..secs * 500 {
        tick.tick().await;
        let mut tx = pool.begin().await.expect("begin");
        let id = outbox
            .enqueue(
                &mut tx,
                &Payment {
                    key: format!("{}", i % 100),
                    amount: i,
                    note: &note,
                },
            )
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        committed.insert(id, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < committed.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.expect("task").expect("relay");
    let acked = acked.lock().expect("lock");
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, c)| {
            acked
                .get(id)
                .map(|a| a.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    assert_eq!(ms.len(), committed.len(), "every event was acknowledged");
    (
        outbox_examples::percentile(&mut ms, 50.0),
        outbox_examples::percentile(&mut ms, 99.0),
    )
}

/// The broker's own produce → acknowledgement latency at 500 messages/s, one message at a time: the floor under
/// the outbox's commit → ack latency.
async fn raw_ack_latency(brokers: &str, secs: u64) -> (f64, f64) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let body = "x".repeat(250);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut waits = Vec::new();
    for i in 0..secs * 500 {
        tick.tick().await;
        let key = format!("{}", i % 100);
        let sent = Instant::now();
        let delivery = producer
            .send_result(FutureRecord::to("bench.raw").key(&key).payload(&body))
            .map_err(|(e, _)| e)
            .expect("send");
        waits.push(tokio::spawn(async move {
            delivery.await.expect("delivery").expect("acknowledged");
            sent.elapsed().as_secs_f64() * 1e3
        }));
    }
    let mut ms: Vec<f64> = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    (
        outbox_examples::percentile(&mut ms, 50.0),
        outbox_examples::percentile(&mut ms, 99.0),
    )
}

/// Drains the backlog of `table` in a child process (so its memory is the relay's alone); returns (rate, peak RSS MiB).
fn drain_in_child(table: &str, total: u64) -> (f64, f64) {
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args(["--child-drain", table, &total.to_string()])
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "child said: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v["rate"].as_f64().unwrap_or(0.0),
        v["peak_rss_mib"].as_f64().unwrap_or(0.0),
    )
}

async fn child_drain(table: &str, total: u64) {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&outbox_examples::database_url())
        .await
        .expect("connect");
    let cfg = config(table);
    let rate = drain_rate(&pool, &cfg, NoopTransport, total).await;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "{}",
        serde_json::json!({ "rate": rate, "peak_rss_mib": hwm_kb / 1024.0 })
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-drain") {
        child_drain(&args[i + 1], args[i + 2].parse().expect("total")).await;
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            enqueue_secs: 4.0,
            drain_backlog: 20_000,
            small_backlog: 10_000,
            big_backlog: 200_000,
            latency_secs: 5,
            naive_secs: 3.0,
        }
    } else {
        Sizes {
            enqueue_secs: 12.0,
            drain_backlog: 100_000,
            small_backlog: 10_000,
            big_backlog: 1_000_000,
            latency_secs: 20,
            naive_secs: 5.0,
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(24)
        .connect(&outbox_examples::database_url())
        .await
        .expect("connect");
    let brokers = outbox_examples::kafka_brokers();
    outbox_examples::ensure_topics(
        &brokers,
        &[("bench.payments", 6), ("bench.drain", 6), ("bench.raw", 6)],
    )
    .await
    .expect("topics");
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_accounts; CREATE TABLE bench_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL); \
         INSERT INTO bench_accounts SELECT i, 0 FROM generate_series(0, 9999) i;",
    )
    .execute(&pool)
    .await
    .expect("accounts");
    let mut figures: Vec<(&str, f64)> = Vec::new();
    let mut table = String::new();
    let mode = if quick { "quick" } else { "full" };
    eprintln!("outbox bench ({mode})");

    eprintln!("- enqueue overhead, 1 and 8 connections");
    let (o1, r1) = enqueue_ratio(&pool, 1, sizes.enqueue_secs, true).await;
    let (o8, r8) = enqueue_ratio(&pool, 8, sizes.enqueue_secs, true).await;
    let (q8, s8) = enqueue_ratio(&pool, 8, sizes.enqueue_secs, false).await;
    figures.push(("enqueue_ratio_1conn", o1 / r1));
    figures.push(("enqueue_ratio_8conn", o8 / r8));
    figures.push(("enqueue_ratio_8conn_notify_off", q8 / s8));
    let _ = writeln!(table, "| enqueue overhead, 1 connection | {o1:.0} tx/s | plain INSERT of the same bytes: {r1:.0} tx/s | **{:.3}×** | ≥ 0.95× |", o1 / r1);
    let _ = writeln!(table, "| enqueue overhead, 8 connections | {o8:.0} tx/s | plain INSERT of the same bytes: {r8:.0} tx/s | **{:.3}×** | ≥ 0.95× |", o8 / r8);
    let _ = writeln!(table, "| … 8 connections, notifications off | {q8:.0} tx/s | plain INSERT of the same bytes: {s8:.0} tx/s | **{:.3}×** | report |", q8 / s8);

    eprintln!("- batch enqueue, 1,000 events per transaction");
    let (ob, rb) = batch_enqueue_ratio(&pool, sizes.enqueue_secs).await;
    figures.push(("batch_enqueue_ratio", ob / rb));
    let _ = writeln!(table, "| batch enqueue, 1,000 events/tx | {ob:.0} events/s | one UNNEST insert of the same rows: {rb:.0} events/s | **{:.3}×** | ≥ 0.9× |", ob / rb);

    eprintln!(
        "- relay drain of a {}-event backlog, 1 KiB payloads",
        sizes.drain_backlog
    );
    let drain = config("bench_drain");
    let noop = noop_drain_rate(&pool, &drain, sizes.drain_backlog).await;
    let raw = raw_producer_rate(&brokers, sizes.drain_backlog, PAYLOAD_1K).await;
    fill_backlog(
        &pool,
        &drain,
        sizes.drain_backlog,
        PAYLOAD_1K,
        "bench.drain",
    )
    .await;
    let kafka = KafkaTransport::new(KafkaTransportConfig::new(&brokers)).expect("kafka");
    kafka
        .ready(&["bench.drain"], Duration::from_secs(10))
        .await
        .expect("ready");
    let relay_rate = drain_rate(&pool, &drain, kafka, sizes.drain_backlog).await;
    let baseline = noop.min(raw);
    figures.push(("drain_ratio", relay_rate / baseline));
    figures.push(("drain_events_per_s", relay_rate));
    figures.push(("claim_mark_noop_events_per_s", noop));
    figures.push(("raw_producer_events_per_s", raw));
    let _ = writeln!(table, "| relay drain, {} × 1 KiB | {relay_rate:.0} events/s | min(claim+mark with a no-op transport {noop:.0}/s, raw rdkafka producer {raw:.0}/s) | **{:.3}×** | ≥ 0.7× |", sizes.drain_backlog, relay_rate / baseline);

    eprintln!("- a straightforward relay (one event at a time)");
    fill_backlog(&pool, &drain, 20_000, PAYLOAD_1K, "bench.drain").await;
    let naive = naive_rate(&pool, &drain, &brokers, sizes.naive_secs).await;
    figures.push(("naive_factor", relay_rate / naive));
    figures.push(("naive_events_per_s", naive));
    let _ = writeln!(table, "| the relay vs a straightforward relay | {relay_rate:.0} events/s | poll one, publish, await, delete: {naive:.0} events/s | **{:.1}×** | report |", relay_rate / naive);

    eprintln!("- commit → ack latency at 500 events/s");
    let (p50, p99) = latency(&pool, &brokers, sizes.latency_secs).await;
    let (raw50, raw99) = raw_ack_latency(&brokers, sizes.latency_secs).await;
    figures.push(("latency_p50_ms", p50));
    figures.push(("latency_p99_ms", p99));
    figures.push(("raw_ack_p50_ms", raw50));
    figures.push(("raw_ack_p99_ms", raw99));
    let _ = writeln!(table, "| commit → broker ack at 500 events/s, notifications on | p50 {p50:.1} ms, p99 {p99:.1} ms | the broker alone, produce → ack at 500/s: p50 {raw50:.1} ms, p99 {raw99:.1} ms | | p50 ≤ 5 ms, p99 ≤ 25 ms |");

    eprintln!(
        "- drain rate and relay memory: {} vs {} backlog, and with an old snapshot open",
        sizes.small_backlog, sizes.big_backlog
    );
    let small = config("bench_small");
    fill_backlog(&pool, &small, sizes.small_backlog, 100, "bench.drain").await;
    let (small_rate, small_rss) = drain_in_child("bench_small", sizes.small_backlog);
    let big = config("bench_big");
    fill_backlog(&pool, &big, sizes.big_backlog, 100, "bench.drain").await;
    let (big_rate, big_rss) = drain_in_child("bench_big", sizes.big_backlog);
    fill_backlog(&pool, &big, sizes.big_backlog, 100, "bench.drain").await;
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *holder)
        .await
        .expect("rr");
    sqlx::query("SELECT count(*) FROM bench_accounts")
        .execute(&mut *holder)
        .await
        .expect("snapshot");
    let (xmin_rate, _) = drain_in_child("bench_big", sizes.big_backlog);
    holder.rollback().await.expect("rollback");
    figures.push(("relay_peak_rss_mib", big_rss.max(small_rss)));
    figures.push(("relay_peak_rss_mib_small", small_rss));
    figures.push(("drain_ratio_1m", big_rate / small_rate));
    figures.push(("drain_ratio_xmin", xmin_rate / small_rate));
    figures.push(("big_backlog", sizes.big_backlog as f64));
    let _ = writeln!(table, "| relay peak memory, {} vs {} backlog (no-op transport) | {big_rss:.1} MiB vs {small_rss:.1} MiB | — | | ≤ 64 MiB, flat |", sizes.big_backlog, sizes.small_backlog);
    let _ = writeln!(table, "| drain rate with a {} backlog (no-op transport) | {big_rate:.0} events/s | {}-backlog rate: {small_rate:.0} events/s | **{:.3}×** | ≥ 0.9× |", sizes.big_backlog, sizes.small_backlog, big_rate / small_rate);
    let _ = writeln!(table, "| … while a REPEATABLE READ transaction stays open | {xmin_rate:.0} events/s | {}-backlog rate: {small_rate:.0} events/s | **{:.3}×** | ≥ 0.7× |", sizes.small_backlog, xmin_rate / small_rate);

    // Last, because the recorder is global: the same no-op drain without and then with a Prometheus recorder
    // taking every metric (per-batch counters by topic and event type, a latency per event, the backlog query).
    eprintln!("- metrics overhead: a no-op drain without and with a Prometheus recorder");
    let bare = noop_drain_rate(&pool, &drain, sizes.drain_backlog).await;
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("install the Prometheus recorder");
    let measured = noop_drain_rate(&pool, &drain, sizes.drain_backlog).await;
    assert!(
        prometheus
            .render()
            .contains("outbox_events_published_total"),
        "the recorder saw the relay's metrics"
    );
    figures.push(("metrics_overhead_ratio", measured / bare));
    let _ = writeln!(table, "| no-op drain with a Prometheus recorder, {} events | {measured:.0} events/s | the same drain without a recorder: {bare:.0} events/s | **{:.3}×** | report |", sizes.drain_backlog, measured / bare);

    for cfg in [
        config("bench_enqueue"),
        config("bench_enqueue_raw"),
        config("bench_batch"),
        config("bench_batch_raw"),
        drain,
        config("bench_latency"),
        small,
        big,
    ] {
        let _ = sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", cfg.table.quoted()))
            .execute(&pool)
            .await;
    }

    println!("| measure | outbox | raw baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    print!("{table}");
    let json: serde_json::Map<String, serde_json::Value> = figures
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                serde_json::json!((v * 1000.0).round() / 1000.0),
            )
        })
        .chain([("mode".to_owned(), serde_json::json!(mode))])
        .collect();
    println!("{}", serde_json::Value::Object(json));
}
