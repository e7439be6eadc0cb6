//! The other side of the demo: an idempotent consumer of `batch.events` and `pipeline.events`.
//!
//! Every message goes through the inbox: one transaction records its event id in the `inbox` table and updates
//! the `batch_read_model` table (one row per batch: its latest status and how many events it has seen). A
//! redelivered event is skipped, so `events_seen` counts each event once however often Kafka delivers it.
//!
//! ```text
//! cargo run --release -p outbox-examples --bin batch_orchestrator -- --events 2000
//! cargo run --release -p outbox-examples --bin inbox_consumer -- --exit-when-idle 5
//! ```
//! Needs `DATABASE_URL` and `KAFKA_BROKERS`. Runs until Ctrl-C, or with `--exit-when-idle SECS` until nothing
//! arrived for that long; then prints what it did and the read model's totals.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use outbox_core::inbox::{HandlerError, InboxConfig, InboxConsumer, InboxHandler, InboxMessage};
use outbox_examples::ensure_topics;
use outbox_kafka::{KafkaSource, KafkaSourceConfig};
use outbox_postgres::{PgInbox, PgInboxConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOPICS: [&str; 2] = ["batch.events", "pipeline.events"];

const READ_MODEL: &str = "CREATE TABLE IF NOT EXISTS batch_read_model (
    batch_id    uuid        PRIMARY KEY,
    status      text        NOT NULL,
    stage       integer     NOT NULL DEFAULT 0,
    events_seen integer     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE batch_read_model ADD COLUMN IF NOT EXISTS stage integer NOT NULL DEFAULT 0";

/// The read-model projection: the batch's status after each event type.
struct ProjectBatches;

/// The batch id of a demo event: at the top of a struct event (`{"batch_id": ..}`), or inside the variant of an
/// enum event (`{"Completed": {"batch_id": ..}}`, serde's default enum layout).
fn batch_id(payload: &serde_json::Value) -> Option<Uuid> {
    let field = payload.get("batch_id").or_else(|| {
        payload
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.values().next())
            .and_then(|variant| variant.get("batch_id"))
    })?;
    field.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

/// The status an event type leads to, and how far along the pipeline that is. The demo's events come on two
/// topics, and Kafka orders only within a partition, so a batch's `pipeline.*` event can arrive before its last
/// `batch.*` event: the status only ever moves forward.
fn status_after(event_type: &str) -> Option<(&'static str, i32)> {
    Some(match event_type {
        "batch.created.v1" => ("created", 1),
        "batch.spellcheck.initiated.v1" => ("spellchecking", 2),
        "batch.reviewer.assigned.v1" => ("in review", 3),
        "pipeline.completed.v1" => ("completed", 4),
        "pipeline.failed.v1" => ("failed", 4),
        _ => return None,
    })
}

#[async_trait]
impl InboxHandler<PgConnection> for ProjectBatches {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        message: &InboxMessage,
    ) -> Result<(), HandlerError> {
        let event_type = message.header_str("event-type").unwrap_or_default();
        let Some((status, stage)) = status_after(event_type) else {
            // An event type this projection does not know: fail, so it is retried and then parked for a
            // human rather than silently dropped.
            return Err(format!("unknown event type {event_type:?}").into());
        };
        let payload: serde_json::Value = message.payload_json()?;
        let batch_id = batch_id(&payload).ok_or("the payload has no batch_id")?;
        sqlx::query(
            "INSERT INTO batch_read_model (batch_id, status, stage, events_seen) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (batch_id) DO UPDATE SET \
               status = CASE WHEN excluded.stage >= batch_read_model.stage THEN excluded.status ELSE batch_read_model.status END, \
               stage = greatest(excluded.stage, batch_read_model.stage), \
               events_seen = batch_read_model.events_seen + 1, updated_at = now()",
        )
        .bind(batch_id)
        .bind(status)
        .bind(stage)
        .execute(conn)
        .await?;
        Ok(())
    }
}

fn parse_args() -> anyhow::Result<(String, Option<Duration>)> {
    let mut group = "batch-read-model".to_owned();
    let mut idle = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--group" => group = args.next().context("--group needs a value")?,
            "--exit-when-idle" => {
                let secs: u64 = args
                    .next()
                    .context("--exit-when-idle needs a value")?
                    .parse()
                    .context("--exit-when-idle needs whole seconds")?;
                idle = Some(Duration::from_secs(secs));
            }
            "-h" | "--help" => {
                println!("usage: inbox_consumer [--group NAME (batch-read-model)] [--exit-when-idle SECS]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    Ok((group, idle))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    outbox_examples::init_logging();
    let (group, idle) = parse_args()?;
    let brokers = outbox_examples::kafka_brokers();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&outbox_examples::database_url())
        .await
        .context("connect to PostgreSQL")?;
    outbox_postgres::migrate_inbox(&pool).await?;
    sqlx::raw_sql(READ_MODEL).execute(&pool).await?;
    ensure_topics(&brokers, &[(TOPICS[0], 3), (TOPICS[1], 3)]).await?;

    let inbox = PgInbox::new(pool.clone(), PgInboxConfig::default());
    let source = KafkaSource::new(KafkaSourceConfig::new(&brokers, &group), &TOPICS)?;
    let consumer = InboxConsumer::new(inbox, source, ProjectBatches, InboxConfig::default());

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::signal::ctrl_c().await.ok();
        stop.cancel();
    });
    let run = consumer.run(shutdown.clone());
    tokio::pin!(run);
    let mut last_seen = 0;
    let mut quiet_since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            result = &mut run => { result?; break; }
            _ = tick.tick() => {
                let stats = consumer.stats();
                let seen = stats.processed + stats.duplicates + stats.parked;
                if seen != last_seen {
                    last_seen = seen;
                    quiet_since = tokio::time::Instant::now();
                } else if idle.is_some_and(|idle| quiet_since.elapsed() >= idle) {
                    shutdown.cancel();
                }
            }
        }
    }

    let stats = consumer.stats();
    let (batches, events): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), sum(events_seen)::bigint FROM batch_read_model")
            .fetch_one(&pool)
            .await?;
    println!(
        "inbox_consumer: processed {} duplicates {} parked {} retries {}; read model: {batches} batches, {} events",
        stats.processed,
        stats.duplicates,
        stats.parked,
        stats.retries,
        events.unwrap_or(0)
    );
    Ok(())
}
