//! The main demo: a small batch-orchestration service.
//!
//! It creates batches of essays and moves each through a pipeline. Every step is one database transaction that
//! updates the service's own `batches` table and enqueues the step's event with `tx.enqueue(&event)`; a few
//! transactions are rolled back on purpose (a reviewer assignment that fails). Relays publish the outbox to
//! Kafka while a consumer reads both topics back and checks that exactly the committed events arrived, once
//! each, in order per key, with the right key, headers and payload.
//!
//! ```text
//! cargo run --release -p outbox-examples --bin batch_orchestrator -- --events 10000
//! ```
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (scripts/demo.sh starts both). Exits non-zero when anything is
//! missing, duplicated, out of order or arrived although it was rolled back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use outbox_core::{ClaimedEvent, OutboxEvent, PublishError, Relay, RelayConfig, Transport};
use outbox_examples::{check_delivery, ensure_topics, percentile, ExpectedEvent, TopicReader};
use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
use outbox_postgres::{EnqueueExt, PgOutboxConfig, PgStore};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BATCH_TOPIC: &str = "batch.events";
const PIPELINE_TOPIC: &str = "pipeline.events";

/// One essay of a batch.
#[derive(Debug, Clone, Serialize)]
struct EssayRef {
    essay_id: Uuid,
    words: u32,
}

/// A batch was created.
#[derive(Debug, Serialize, OutboxEvent)]
#[outbox(
    topic = "batch.events",
    aggregate = "batch",
    event_type = "batch.created.v1",
    version = 1
)]
struct BatchCreated {
    #[outbox(key)]
    batch_id: Uuid,
    run_id: Uuid,
    essay_count: u32,
}

/// Spellchecking of a batch started.
#[derive(Debug, Serialize, OutboxEvent)]
#[outbox(
    topic = "batch.events",
    aggregate = "batch",
    event_type = "batch.spellcheck.initiated.v1"
)]
struct SpellcheckInitiated {
    #[outbox(key)]
    batch_id: Uuid,
    run_id: Uuid,
    essays: Vec<EssayRef>,
}

/// A reviewer was assigned. The demo rolls some of these transactions back: those events must never arrive.
#[derive(Debug, Serialize, OutboxEvent)]
#[outbox(
    topic = "batch.events",
    aggregate = "batch",
    event_type = "batch.reviewer.assigned.v1"
)]
struct ReviewerAssigned {
    #[outbox(key)]
    batch_id: Uuid,
    run_id: Uuid,
    reviewer: String,
}

/// How a batch's pipeline ended: one enum, each variant its own event type.
#[derive(Debug, Serialize, OutboxEvent)]
#[outbox(topic = "pipeline.events", aggregate = "batch")]
enum PipelineOutcome {
    #[outbox(event_type = "pipeline.completed.v1")]
    Completed {
        #[outbox(key)]
        batch_id: Uuid,
        run_id: Uuid,
        misspellings: u32,
    },
    #[outbox(event_type = "pipeline.failed.v1")]
    Failed {
        #[outbox(key)]
        batch_id: Uuid,
        run_id: Uuid,
        reason: String,
    },
}

struct Options {
    events: usize,
    writers: usize,
    relays: usize,
    rollback_every: usize,
    metrics_addr: std::net::SocketAddr,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 10_000,
        writers: 8,
        relays: 2,
        rollback_every: 7,
        metrics_addr: std::env::var("OUTBOX_METRICS_ADDR")
            .unwrap_or_else(|_| "127.0.0.1:9464".into())
            .parse()
            .context("OUTBOX_METRICS_ADDR must be an address like 127.0.0.1:9464")?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a whole number"))
        };
        match arg.as_str() {
            "--events" => options.events = value("--events")?,
            "--writers" => options.writers = value("--writers")?.max(1),
            "--relays" => options.relays = value("--relays")?.max(1),
            "--rollback-every" => options.rollback_every = value("--rollback-every")?.max(2),
            "--metrics-addr" => {
                options.metrics_addr = args
                    .next()
                    .context("--metrics-addr needs a value")?
                    .parse()
                    .context("--metrics-addr needs an address like 127.0.0.1:9464")?
            }
            "-h" | "--help" => {
                println!("usage: batch_orchestrator [--events N (10000)] [--writers N (8)] [--relays N (2)] [--rollback-every N (7)] [--metrics-addr ADDR (127.0.0.1:9464, or OUTBOX_METRICS_ADDR)]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    Ok(options)
}

/// What the service committed and rolled back, and when each event committed.
#[derive(Default)]
struct Ledger {
    expected: Vec<ExpectedEvent>,
    rolled_back: HashSet<Uuid>,
    committed_at: HashMap<Uuid, Instant>,
}

/// Wraps the Kafka transport to note when the broker acknowledged each event (for commit→ack latency).
struct TimedTransport {
    inner: KafkaTransport,
    acked_at: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

#[async_trait]
impl Transport for TimedTransport {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        let results = self.inner.publish(batch).await;
        let now = Instant::now();
        let mut acked = self.acked_at.lock().unwrap_or_else(|p| p.into_inner());
        for (event, result) in batch.iter().zip(&results) {
            if result.is_ok() {
                acked.entry(event.id).or_insert(now);
            }
        }
        results
    }
}

/// Runs one batch through its steps; `budget` is how many committed events it may still produce.
async fn run_batch(
    pool: &sqlx::PgPool,
    ledger: &Mutex<Ledger>,
    run_id: Uuid,
    number: usize,
    budget: usize,
    rollback_every: usize,
) -> anyhow::Result<usize> {
    let batch_id = Uuid::now_v7();
    let essays: Vec<EssayRef> = (0..3)
        .map(|i| EssayRef {
            essay_id: Uuid::now_v7(),
            words: 250 + (number as u32 % 97) * 3 + i,
        })
        .collect();
    let mut committed = 0;
    let record = |id: Uuid, expected: ExpectedEvent| {
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.committed_at.insert(id, Instant::now());
        l.expected.push(expected);
    };

    // Step 1: create the batch.
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO batches (id, run_id, status, essay_count) VALUES ($1, $2, 'created', $3)",
    )
    .bind(batch_id)
    .bind(run_id)
    .bind(essays.len() as i32)
    .execute(&mut *tx)
    .await?;
    let created = BatchCreated {
        batch_id,
        run_id,
        essay_count: essays.len() as u32,
    };
    let id = tx.enqueue(&created).await?;
    tx.commit().await?;
    record(id, ExpectedEvent::of(id, &created));
    committed += 1;
    if committed == budget {
        return Ok(committed);
    }

    // Sometimes: assign a reviewer, and fail after enqueueing. The rollback must take the event with it.
    if number.is_multiple_of(rollback_every) {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE batches SET status = 'reviewing' WHERE id = $1")
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        let id = tx
            .enqueue(&ReviewerAssigned {
                batch_id,
                run_id,
                reviewer: format!("reviewer-{}", number % 5),
            })
            .await?;
        tx.rollback().await?;
        ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rolled_back
            .insert(id);
    }

    // Step 2: start spellchecking.
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE batches SET status = 'spellchecking' WHERE id = $1")
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
    let initiated = SpellcheckInitiated {
        batch_id,
        run_id,
        essays: essays.clone(),
    };
    let id = tx.enqueue(&initiated).await?;
    tx.commit().await?;
    record(id, ExpectedEvent::of(id, &initiated));
    committed += 1;
    if committed == budget {
        return Ok(committed);
    }

    // Step 3: the pipeline ends, one way or the other.
    let outcome = if number % 10 == 3 {
        PipelineOutcome::Failed {
            batch_id,
            run_id,
            reason: "spellchecker timed out".into(),
        }
    } else {
        PipelineOutcome::Completed {
            batch_id,
            run_id,
            misspellings: (number % 13) as u32,
        }
    };
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE batches SET status = $2 WHERE id = $1")
        .bind(batch_id)
        .bind(match outcome {
            PipelineOutcome::Completed { .. } => "completed",
            PipelineOutcome::Failed { .. } => "failed",
        })
        .execute(&mut *tx)
        .await?;
    let id = tx.enqueue(&outcome).await?;
    tx.commit().await?;
    record(id, ExpectedEvent::of(id, &outcome));
    committed += 1;
    Ok(committed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    outbox_examples::init_logging();
    let options = parse_args()?;
    let database_url = outbox_examples::database_url();
    let brokers = outbox_examples::kafka_brokers();
    let run_id = Uuid::now_v7();
    println!(
        "batch orchestrator: run {run_id}, {} events, {} writers, {} relays",
        options.events, options.writers, options.relays
    );

    // Metrics for Prometheus at http://<metrics-addr>/metrics while the service runs.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(options.metrics_addr)
        .install()
        .with_context(|| format!("serve metrics on {}", options.metrics_addr))?;
    println!("  metrics: http://{}/metrics", options.metrics_addr);

    let pool = PgPoolOptions::new()
        .max_connections((options.writers + options.relays * 2 + 2) as u32)
        .connect(&database_url)
        .await
        .context("connect to PostgreSQL")?;
    outbox_postgres::migrate(&pool).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS batches (id uuid PRIMARY KEY, run_id uuid NOT NULL, status text NOT NULL, essay_count int NOT NULL)",
    )
    .execute(&pool)
    .await?;
    ensure_topics(&brokers, &[(BATCH_TOPIC, 3), (PIPELINE_TOPIC, 3)]).await?;
    let reader = TopicReader::new(&brokers, &[BATCH_TOPIC, PIPELINE_TOPIC])?;

    // Relays: several instances on one table, as a deployment with replicas would run them.
    let shutdown = CancellationToken::new();
    let acked_at = Arc::new(Mutex::new(HashMap::new()));
    let mut relays = Vec::new();
    for _ in 0..options.relays {
        let store = PgStore::new(pool.clone(), PgOutboxConfig::default());
        store.check_schema().await?;
        let kafka = KafkaTransport::new(KafkaTransportConfig::new(&brokers).set("linger.ms", "2"))?;
        kafka
            .ready(&[BATCH_TOPIC, PIPELINE_TOPIC], Duration::from_secs(10))
            .await?;
        let transport = TimedTransport {
            inner: kafka,
            acked_at: acked_at.clone(),
        };
        let relay = Relay::new(
            store,
            transport,
            RelayConfig {
                metric_labels: vec![("service".into(), "batch-orchestrator".into())],
                backlog_interval: Some(Duration::from_secs(1)),
                ..RelayConfig::default()
            },
        );
        let token = shutdown.clone();
        relays.push(tokio::spawn(async move { relay.run(token).await }));
    }

    // Writers: batches run concurrently, each batch's steps in order.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let next_batch = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..options.writers {
        let (pool, ledger, next_batch, produced) = (
            pool.clone(),
            ledger.clone(),
            next_batch.clone(),
            produced.clone(),
        );
        let (total, rollback_every) = (options.events, options.rollback_every);
        writers.push(tokio::spawn(async move {
            loop {
                // Reserve up to three events of the budget for the next batch.
                let reserved = loop {
                    let done = produced.load(std::sync::atomic::Ordering::SeqCst);
                    if done >= total {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let take = (total - done).min(3);
                    if produced
                        .compare_exchange(
                            done,
                            done + take,
                            std::sync::atomic::Ordering::SeqCst,
                            std::sync::atomic::Ordering::SeqCst,
                        )
                        .is_ok()
                    {
                        break take;
                    }
                };
                let number = next_batch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                run_batch(&pool, &ledger, run_id, number, reserved, rollback_every).await?;
            }
        }));
    }

    // Consumer: read both topics back while the service runs.
    let mut received = Vec::new();
    let mut ours = HashSet::new();
    let mut last_progress = Instant::now();
    let mut last_line = Instant::now();
    let mut writers_done = false;
    loop {
        if let Some(m) = reader.next(Duration::from_millis(200)).await? {
            if let Some(id) = m.event_id() {
                ours.insert(id);
            }
            received.push(m);
            last_progress = Instant::now();
        }
        if !writers_done && writers.iter().all(|w| w.is_finished()) {
            writers_done = true;
        }
        let (committed, expected_ids) = {
            let l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            (
                l.expected.len(),
                l.expected.iter().filter(|e| ours.contains(&e.id)).count(),
            )
        };
        if last_line.elapsed() >= Duration::from_secs(1) {
            println!(
                "  committed {committed:>7}/{}  delivered {expected_ids:>7}  ({:.1} s)",
                options.events,
                started.elapsed().as_secs_f64()
            );
            last_line = Instant::now();
        }
        if writers_done && expected_ids >= committed {
            break;
        }
        if writers_done && last_progress.elapsed() > Duration::from_secs(30) {
            println!("  nothing new for 30 s; stopping the consumer");
            break;
        }
    }
    // Give a late duplicate a moment to show up.
    while let Some(m) = reader.next(Duration::from_millis(500)).await? {
        received.push(m);
    }
    let elapsed = started.elapsed();
    for writer in writers {
        writer.await??;
    }
    shutdown.cancel();
    for relay in relays {
        relay.await??;
    }

    // What the relays reported on the Prometheus endpoint: every committed event counted as published once.
    let scraped = scrape(options.metrics_addr).await?;
    let published_metric = sum_of(&scraped, "outbox_events_published_total");
    let relay_p99 = scraped
        .lines()
        .filter(|l| {
            l.starts_with("outbox_commit_to_ack_seconds{") && l.contains("quantile=\"0.99\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0f64, f64::max);
    let ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
    let report = check_delivery(&ledger.expected, &ledger.rolled_back, &received);
    let acked = acked_at.lock().unwrap_or_else(|p| p.into_inner());
    let mut latencies: Vec<f64> = ledger
        .committed_at
        .iter()
        .filter_map(|(id, committed)| {
            acked
                .get(id)
                .map(|a| a.saturating_duration_since(*committed).as_secs_f64() * 1000.0)
        })
        .collect();
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let rate = report.delivered as f64 / elapsed.as_secs_f64();

    println!();
    println!("summary");
    println!("  enqueued (committed)   {:>8}", ledger.expected.len());
    println!("  rolled back            {:>8}", ledger.rolled_back.len());
    println!("  delivered              {:>8}", report.delivered);
    println!("  missing                {:>8}", report.missing);
    println!("  duplicates             {:>8}", report.duplicates);
    println!("  out of order           {:>8}", report.out_of_order);
    println!("  rolled back but seen   {:>8}", report.forbidden);
    println!("  bad key/header/payload {:>8}", report.mismatches.len());
    println!("  events/s               {rate:>8.0}");
    println!("  commit→ack p50 / p99   {p50:>6.1} ms / {p99:.1} ms");
    println!(
        "  metrics: published    {published_metric:>8}   (outbox_events_published_total; relay commit→ack p99 {:.1} ms)",
        relay_p99 * 1e3
    );
    for line in &report.mismatches {
        println!("  mismatch: {line}");
    }
    let summary = serde_json::json!({
        "run_id": run_id,
        "enqueued": ledger.expected.len(),
        "rolled_back": ledger.rolled_back.len(),
        "delivered": report.delivered,
        "missing": report.missing,
        "duplicates": report.duplicates,
        "out_of_order": report.out_of_order,
        "rolled_back_seen": report.forbidden,
        "mismatches": report.mismatches.len(),
        "events_per_s": rate.round(),
        "commit_to_ack_p50_ms": (p50 * 10.0).round() / 10.0,
        "commit_to_ack_p99_ms": (p99 * 10.0).round() / 10.0,
        "metric_published_total": published_metric,
    });
    println!("{summary}");
    if published_metric < ledger.expected.len() as u64 {
        bail!(
            "outbox_events_published_total is {published_metric}, below the {} committed events",
            ledger.expected.len()
        );
    }
    if !report.is_perfect() || ledger.expected.len() != options.events {
        bail!(
            "delivery check failed: {}/{} delivered",
            report.delivered,
            options.events
        );
    }
    Ok(())
}

/// The Prometheus text of the metrics endpoint at `addr` (a plain HTTP/1.0 GET).
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to the metrics endpoint {addr}"))?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response from the metrics endpoint")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "metrics endpoint answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// The sum of every sample of the counter `name`, across its labels.
fn sum_of(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
