//! Metrics and trace context on real PostgreSQL and the real broker: the relay's metrics as a Prometheus
//! exporter renders them (every metric the README lists), the backlog gauges, LISTEN reconnects, and the
//! producer's trace context arriving as a `traceparent` header that the inbox consumer continues.
//!
//! This binary installs a global Prometheus recorder, so its tests share it; each uses its own topics and
//! `service` label value.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{commit_events, kafka, spawn_relay, Ev, FaultyTransport, Shared};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
use outbox_core::inbox::{HandlerError, InboxConfig, InboxConsumer, InboxHandler, InboxMessage};
use outbox_core::memory::MemoryTransport;
use outbox_core::telemetry::{parse_traceparent, TRACEPARENT};
use outbox_core::{CancellationToken, NewMessage, RelayConfig, RetryPolicy};
use outbox_examples::TopicReader;
use outbox_kafka::{KafkaSource, KafkaSourceConfig};
use outbox_postgres::{PgInbox, PgInboxConfig, TableName};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder")
    })
}

/// The value of the sample `name{...}` whose labels include every pair in `labels`, in Prometheus text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Waits until the rendered metrics satisfy `ok`.
async fn wait_for_metrics(what: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = prometheus().render();
        if ok(&text) {
            return text;
        }
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {what}; metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn relay_config(service: &str) -> RelayConfig {
    RelayConfig {
        metric_labels: vec![("service".into(), service.into())],
        backlog_interval: Some(Duration::from_millis(100)),
        ..common::relay_config()
    }
}

#[tokio::test]
async fn relay_metrics_reach_a_prometheus_exporter() {
    prometheus();
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let (a, b) = (format!("tele.a.{run}"), format!("tele.b.{run}"));
    let (pool, config, outbox, brokers) =
        common::setup("telemetry_metrics", &[(&a, 2), (&b, 1)]).await;
    let service = format!("svc-{run}");
    let events: Vec<Ev> = (0..10)
        .map(|n| Ev::new(&a, &format!("k{}", n % 3), n))
        .chain((0..4).map(|n| Ev::new(&b, "only", n)))
        .collect();
    let expected = commit_events(&pool, &outbox, &events).await;
    // The last event of topic b fails twice: one retry, then dead-lettered at its second attempt.
    let doomed = expected.last().expect("events").id;

    // A relay whose broker is down: nothing leaves, the gauges show the backlog.
    let down = MemoryTransport::new();
    down.set_unavailable(true);
    let stalled = spawn_relay(&pool, &config, down, relay_config(&service));
    let svc = ("service", service.as_str());
    wait_for_metrics("the backlog gauges", |m| {
        sample(m, "outbox_events_pending", &[svc, ("topic", &a)]) == Some(10.0)
            && sample(m, "outbox_events_pending", &[svc, ("topic", &b)]) == Some(4.0)
            && sample(m, "outbox_broker_outages_total", &[svc]).unwrap_or(0.0) >= 1.0
    })
    .await;
    stalled.stop().await;

    // The real broker: everything is published or dead-lettered, counted by topic and event type, and the
    // backlog empties.
    let faulty = FaultyTransport::new(kafka(&brokers));
    faulty.reject(doomed, 2);
    let relay = spawn_relay(
        &pool,
        &config,
        Shared(faulty),
        RelayConfig {
            max_attempts: 2,
            retry: RetryPolicy {
                initial: Duration::from_millis(50),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..relay_config(&service)
        },
    );
    let b_events = [svc, ("topic", b.as_str()), ("event_type", "test.event")];
    let text = wait_for_metrics("publishing and an empty backlog", |m| {
        sample(
            m,
            "outbox_events_published_total",
            &[svc, ("topic", &a), ("event_type", "test.event")],
        ) == Some(10.0)
            && sample(m, "outbox_events_published_total", &b_events) == Some(3.0)
            && sample(m, "outbox_events_retried_total", &b_events) == Some(1.0)
            && sample(m, "outbox_events_dead_lettered_total", &b_events) == Some(1.0)
            && sample(m, "outbox_events_pending", &[svc, ("topic", &a)]) == Some(0.0)
            && sample(m, "outbox_events_pending", &[svc, ("topic", &b)]) == Some(0.0)
            && sample(m, "outbox_events_dead", &[svc, ("topic", &b)]) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "outbox_commit_to_ack_seconds_count",
            &[svc, ("topic", &a)]
        ),
        Some(10.0),
        "one latency per published event"
    );
    let slowest = sample(
        &text,
        "outbox_commit_to_ack_seconds",
        &[svc, ("topic", &a), ("quantile", "1")],
    )
    .expect("max latency");
    assert!(
        (0.0..WAIT.as_secs_f64()).contains(&slowest),
        "latency {slowest}"
    );
    assert_eq!(
        sample(&text, "outbox_events_dead", &[svc, ("topic", &a)]),
        Some(0.0)
    );
    assert!(sample(&text, "outbox_publish_duration_seconds_count", &[svc]).unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, "outbox_claim_batch_size_sum", &[svc]).unwrap_or(0.0) >= 14.0);

    // The wake-up listener loses its connection: the relay's LISTEN reconnect is counted.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %' AND query LIKE $1",
    )
    .bind(format!("%{}%", config.channel()))
    .fetch_all(&pool)
    .await
    .expect("terminate the LISTEN connection");
    assert!(!killed.is_empty(), "a LISTEN connection was found");
    wait_for_metrics("a LISTEN reconnect", |m| {
        sample(m, "outbox_listen_reconnects_total", &[svc]).unwrap_or(0.0) >= 1.0
    })
    .await;
    relay.stop().await;

    // Every metric the README documents is exported, with the user's label.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `outbox_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(
        documented.len() >= 13,
        "README lists the metrics: {documented:?}"
    );
    let text = prometheus().render();
    for name in documented {
        let name = format!("outbox_{name}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&name) && l.contains(&format!("service=\"{service}\""))),
            "{name} is documented in the README but not exported"
        );
    }
}

/// Records the trace id of the span the consumer runs the handler in.
struct TraceOfHandler {
    seen: Arc<Mutex<Vec<(Uuid, TraceId)>>>,
}

#[async_trait]
impl InboxHandler<sqlx::PgConnection> for TraceOfHandler {
    async fn handle(
        &self,
        _conn: &mut sqlx::PgConnection,
        message: &InboxMessage,
    ) -> Result<(), HandlerError> {
        let trace = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id();
        self.seen.lock().unwrap().push((message.event_id, trace));
        Ok(())
    }
}

// One thread: the subscriber that turns `tracing` spans into OpenTelemetry spans is this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn the_trace_context_reaches_kafka_and_the_consumer_continues_the_trace() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    );
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let topic = format!("tele.trace.{run}");
    let (pool, config, outbox, brokers) = common::setup("telemetry_trace", &[(&topic, 1)]).await;

    // The producer: a request span, inside which the service enqueues with a correlation id.
    let request = tracing::info_span!("place_order");
    let producer = request.context().span().span_context().clone();
    assert!(producer.is_valid());
    let event_id = {
        let _entered = request.enter();
        let mut tx = pool.begin().await.expect("begin");
        let message = NewMessage::from_event(&Ev::new(&topic, "order-1", 1))
            .and_then(|m| m.with_correlation_id(format!("req-{run}")))
            .expect("encode");
        outbox
            .enqueue_message(&mut tx, &message)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        message.id
    };
    let relay = spawn_relay(&pool, &config, kafka(&brokers), common::relay_config());

    // On the wire: the event's own headers and the producer's span as a W3C traceparent.
    let reader = TopicReader::new(&brokers, &[&topic]).expect("reader");
    let got = reader
        .read_until(|m| !m.is_empty(), WAIT)
        .await
        .expect("read back");
    relay.stop().await;
    assert_eq!(got.len(), 1);
    let header = |name: &str| {
        got[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("event-id"), Some(event_id.to_string()));
    assert_eq!(header("correlation-id"), Some(format!("req-{run}")));
    let traceparent = header(TRACEPARENT).expect("traceparent header");
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", producer.trace_id(), producer.span_id())
    );
    let parsed = parse_traceparent(&traceparent, None).expect("a valid traceparent");
    assert_eq!(parsed.span().span_context().trace_id(), producer.trace_id());

    // The consumer: the inbox runs the handler in a span that continues the producer's trace.
    let inbox_config = PgInboxConfig {
        table: TableName::new("public", "inbox_telemetry_trace").expect("table name"),
    };
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {}",
        inbox_config.table.quoted()
    ))
    .execute(&pool)
    .await
    .expect("drop old inbox");
    outbox_postgres::migrate_inbox_with(&pool, &inbox_config)
        .await
        .expect("migrate inbox");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = Arc::new(InboxConsumer::new(
        PgInbox::new(pool.clone(), inbox_config),
        KafkaSource::new(
            KafkaSourceConfig::new(&brokers, &format!("tele-trace-{run}")),
            &[&topic],
        )
        .expect("kafka source"),
        TraceOfHandler { seen: seen.clone() },
        InboxConfig::default(),
    ));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (consumer, shutdown) = (consumer.clone(), shutdown.clone());
        async move { consumer.run(shutdown).await }
    });
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(started.elapsed() < WAIT, "the consumer handled nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.expect("consumer task").expect("consumer run");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(event_id, producer.trace_id())],
        "the handler's span belongs to the producer's trace"
    );
}
