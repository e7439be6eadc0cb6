//! Helpers the examples and the workspace tests share: where the services are, creating topics, reading
//! topics back, and checking that exactly the committed events arrived, once each, in order per key.
#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// Logs to stderr: `RUST_LOG` when set, else warnings plus the outbox crates' info lines.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,outbox_core=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `DATABASE_URL`, or a loud failure saying how to start the services.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: start the services with `eval \"$(scripts/services.sh up)\"` or run scripts/test.sh")
    })
}

/// `KAFKA_BROKERS`, or a loud failure saying how to start the services.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("KAFKA_BROKERS is not set: start the services with `eval \"$(scripts/services.sh up)\"` or run scripts/test.sh")
    })
}

/// Creates `topics` (name, partitions) unless they exist, and waits until the broker reports them.
pub async fn ensure_topics(brokers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(&new, &options)
        .await
        .context("create topics")?
    {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("could not create topic {name}: {code}"),
        }
    }
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("metadata client")?;
    for (name, _) in topics {
        let mut tries = 0;
        loop {
            let meta = probe.fetch_metadata(Some(name), Duration::from_secs(5));
            if let Ok(meta) = meta {
                if meta
                    .topics()
                    .iter()
                    .any(|t| t.name() == *name && t.error().is_none() && !t.partitions().is_empty())
                {
                    break;
                }
            }
            tries += 1;
            if tries > 50 {
                bail!("topic {name} did not appear in the broker's metadata");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A message read back from the broker.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The key as text.
    pub key: Option<String>,
    /// The payload as text.
    pub payload: Option<String>,
    /// All headers, in order, values as text.
    pub headers: Vec<(String, String)>,
}

impl ReceivedMessage {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `event-id` header as a UUID.
    pub fn event_id(&self) -> Option<Uuid> {
        self.header(outbox_kafka::headers::EVENT_ID)
            .and_then(|v| Uuid::parse_str(v).ok())
    }
}

/// Reads topics from their beginning, every partition, without a consumer group.
pub struct TopicReader {
    consumer: StreamConsumer,
}

impl TopicReader {
    /// A reader of `topics` from offset 0.
    pub fn new(brokers: &str, topics: &[&str]) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("outbox-reader-{}", Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            .create()
            .context("consumer")?;
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            let meta = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("metadata of {topic}"))?;
            let t = meta
                .topics()
                .iter()
                .find(|t| t.name() == *topic)
                .with_context(|| format!("topic {topic} not in metadata"))?;
            for p in t.partitions() {
                assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
        consumer.assign(&assignment).context("assign")?;
        Ok(TopicReader { consumer })
    }

    /// The next message, or `None` if none arrives within `wait`. Transient consumer errors (a broker that is
    /// briefly unreachable) are logged and waited out.
    pub async fn next(&self, wait: Duration) -> anyhow::Result<Option<ReceivedMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "consumer error; still reading");
                    continue;
                }
                Ok(Ok(m)) => return Ok(Some(Self::received(&m))),
            }
        }
    }

    fn received(m: &rdkafka::message::BorrowedMessage<'_>) -> ReceivedMessage {
        {
            {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let mut headers = Vec::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.push((
                            header.key.to_owned(),
                            header.value.map(text).unwrap_or_default(),
                        ));
                    }
                }
                ReceivedMessage {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(text),
                    payload: m.payload().map(text),
                    headers,
                }
            }
        }
    }

    /// Reads until `done` says so for what was read, or until nothing arrived for `idle`.
    pub async fn read_until(
        &self,
        mut done: impl FnMut(&[ReceivedMessage]) -> bool,
        idle: Duration,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        let mut all = Vec::new();
        while !done(&all) {
            match self.next(idle).await? {
                Some(m) => all.push(m),
                None => break,
            }
        }
        Ok(all)
    }
}

/// An event the consumer must see: what was committed.
#[derive(Debug, Clone)]
pub struct ExpectedEvent {
    /// The event id.
    pub id: Uuid,
    /// Its topic.
    pub topic: String,
    /// Its key.
    pub key: String,
    /// Its event type.
    pub event_type: String,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its version.
    pub version: Option<u32>,
    /// Its payload.
    pub payload: serde_json::Value,
}

impl ExpectedEvent {
    /// What `event`, enqueued with id `id`, must look like on the broker.
    pub fn of<E: outbox_core::OutboxEvent>(id: Uuid, event: &E) -> Self {
        ExpectedEvent {
            id,
            topic: event.topic().to_owned(),
            key: event.key().into_owned(),
            event_type: event.event_type().to_owned(),
            aggregate_type: event.aggregate_type().to_owned(),
            version: event.version(),
            payload: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// What a consumer saw, compared with what was committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Committed events that arrived (counted once).
    pub delivered: usize,
    /// Committed events that did not arrive.
    pub missing: usize,
    /// Extra copies of committed events.
    pub duplicates: usize,
    /// Events that arrived before an event of their key committed earlier.
    pub out_of_order: usize,
    /// Events that must never arrive (rolled back) but did.
    pub forbidden: usize,
    /// Arrived with a wrong key, header or payload; one line each, the first 20.
    pub mismatches: Vec<String>,
}

impl DeliveryReport {
    /// Everything committed arrived exactly once, in order, intact, and nothing else of ours.
    pub fn is_perfect(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.forbidden == 0
            && self.mismatches.is_empty()
    }
}

/// Compares `received` with `expected` (each key's events listed in commit order) and `forbidden` ids.
/// Messages with other event ids (e.g. from earlier runs) are ignored.
pub fn check_delivery(
    expected: &[ExpectedEvent],
    forbidden: &HashSet<Uuid>,
    received: &[ReceivedMessage],
) -> DeliveryReport {
    let mut position: HashMap<Uuid, (usize, &ExpectedEvent)> = HashMap::new();
    let mut per_key: HashMap<(&str, &str), usize> = HashMap::new();
    for e in expected {
        let n = per_key.entry((&e.topic, &e.key)).or_default();
        position.insert(e.id, (*n, e));
        *n += 1;
    }
    let mut sorted: Vec<&ReceivedMessage> = received.iter().collect();
    sorted
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));

    let mut report = DeliveryReport::default();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut highest: HashMap<(String, String), usize> = HashMap::new();
    let mismatch = |report: &mut DeliveryReport, line: String| {
        if report.mismatches.len() < 20 {
            report.mismatches.push(line);
        }
    };
    for m in sorted {
        let Some(id) = m.event_id() else { continue };
        if forbidden.contains(&id) {
            report.forbidden += 1;
            continue;
        }
        let Some((pos, e)) = position.get(&id) else {
            continue;
        };
        if !seen.insert(id) {
            report.duplicates += 1;
            continue;
        }
        report.delivered += 1;
        let key = (e.topic.clone(), e.key.clone());
        match highest.get(&key) {
            Some(h) if *h > *pos => report.out_of_order += 1,
            _ => {
                highest.insert(key, *pos);
            }
        }
        if m.topic != e.topic || m.key.as_deref() != Some(e.key.as_str()) {
            mismatch(
                &mut report,
                format!(
                    "{id}: topic/key {}/{:?}, expected {}/{}",
                    m.topic, m.key, e.topic, e.key
                ),
            );
        }
        let version = e.version.map(|v| v.to_string());
        for (name, want) in [
            (
                outbox_kafka::headers::EVENT_TYPE,
                Some(e.event_type.as_str()),
            ),
            (
                outbox_kafka::headers::AGGREGATE_TYPE,
                Some(e.aggregate_type.as_str()),
            ),
            (outbox_kafka::headers::AGGREGATE_ID, Some(e.key.as_str())),
            (
                outbox_kafka::headers::CONTENT_TYPE,
                Some("application/json"),
            ),
            (outbox_kafka::headers::EVENT_VERSION, version.as_deref()),
        ] {
            if m.header(name) != want {
                mismatch(
                    &mut report,
                    format!(
                        "{id}: header {name} = {:?}, expected {want:?}",
                        m.header(name)
                    ),
                );
            }
        }
        let payload: Option<serde_json::Value> = m
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        if payload.as_ref() != Some(&e.payload) {
            mismatch(
                &mut report,
                format!("{id}: payload {:?}, expected {}", m.payload, e.payload),
            );
        }
    }
    report.missing = expected.len() - report.delivered;
    report
}

/// Percentile (0–100) of `values`, which it sorts; 0 for none.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(n: u128, key: &str) -> ExpectedEvent {
        ExpectedEvent {
            id: Uuid::from_u128(n),
            topic: "t".into(),
            key: key.into(),
            event_type: "e".into(),
            aggregate_type: "a".into(),
            version: None,
            payload: serde_json::json!({ "n": n as u64 }),
        }
    }

    fn received(e: &ExpectedEvent, offset: i64) -> ReceivedMessage {
        ReceivedMessage {
            topic: e.topic.clone(),
            partition: 0,
            offset,
            key: Some(e.key.clone()),
            payload: Some(e.payload.to_string()),
            headers: vec![
                ("event-id".into(), e.id.to_string()),
                ("event-type".into(), "e".into()),
                ("aggregate-type".into(), "a".into()),
                ("aggregate-id".into(), e.key.clone()),
                ("content-type".into(), "application/json".into()),
            ],
        }
    }

    #[test]
    fn the_checker_finds_missing_duplicated_reordered_and_forbidden_events() {
        let (a1, a2, b1, c1) = (
            expected(1, "a"),
            expected(2, "a"),
            expected(3, "b"),
            expected(4, "c"),
        );
        let rolled_back = expected(5, "a");
        let got = vec![
            received(&a2, 0),
            received(&a1, 1),
            received(&b1, 2),
            received(&b1, 3),
            received(&rolled_back, 4),
        ];
        let report = check_delivery(&[a1, a2, b1, c1], &HashSet::from([rolled_back.id]), &got);
        assert_eq!(report.delivered, 3);
        assert_eq!(report.missing, 1);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.out_of_order, 1);
        assert_eq!(report.forbidden, 1);
        assert!(report.mismatches.is_empty());
        assert!(!report.is_perfect());
    }

    #[test]
    fn the_checker_accepts_a_perfect_delivery_and_reports_bad_headers() {
        let (a1, a2) = (expected(1, "a"), expected(2, "a"));
        let mut bad = received(&a2, 1);
        bad.headers.retain(|(k, _)| k != "event-type");
        let report = check_delivery(
            &[a1.clone(), a2.clone()],
            &HashSet::new(),
            &[received(&a1, 0), received(&a2, 1)],
        );
        assert!(report.is_perfect(), "{report:?}");
        let report = check_delivery(&[a1.clone(), a2], &HashSet::new(), &[received(&a1, 0), bad]);
        assert_eq!(report.mismatches.len(), 1);
    }
}
