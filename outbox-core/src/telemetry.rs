//! Metrics and trace context.
//!
//! ## Metrics
//! The relay records its metrics through the [`metrics`](https://docs.rs/metrics) facade: install the
//! recorder of your choice (a Prometheus exporter, StatsD, ...) at start-up and they appear there; without one
//! they cost next to nothing. Every metric carries the labels set in [`RelayConfig::metric_labels`]
//! (e.g. `service`), plus the labels listed here. Times come from the database clock (ages) or are durations
//! measured by the relay; no two hosts' clocks are ever compared.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `outbox_events_pending` | gauge | `topic` | events committed and not yet published (refreshed every [`RelayConfig::backlog_interval`]) |
//! | `outbox_oldest_pending_age_seconds` | gauge | `topic` | age of the oldest pending event, 0 when none |
//! | `outbox_events_dead` | gauge | `topic` | dead-lettered events waiting for an operator |
//! | `outbox_events_published_total` | counter | `topic`, `event_type` | events the broker acknowledged and the store recorded |
//! | `outbox_events_retried_total` | counter | `topic`, `event_type` | failed attempts scheduled for a retry |
//! | `outbox_events_dead_lettered_total` | counter | `topic`, `event_type` | events dead-lettered |
//! | `outbox_publish_duration_seconds` | histogram | | time the transport took to publish one batch (send to last acknowledgement) |
//! | `outbox_commit_to_ack_seconds` | histogram | `topic` | from the event's insert (database clock) to the broker's acknowledgement |
//! | `outbox_claim_batch_size` | histogram | | events per non-empty claim |
//! | `outbox_lease_lost_total` | counter | | events whose lease ran out before the relay recorded them (another relay publishes them again) |
//! | `outbox_broker_outages_total` | counter | | batches that failed as a whole because the broker was unreachable |
//! | `outbox_store_errors_total` | counter | | store calls that failed and were retried (database unreachable) |
//! | `outbox_listen_reconnects_total` | counter | | reconnects of the store's wake-up listener (PostgreSQL `LISTEN`) |
//!
//! [`names`] holds these names as constants.
//!
//! ## Trace context
//! With the `opentelemetry` feature, [`NewMessage::from_event`](crate::NewMessage::from_event) (and so every
//! `enqueue`) stores the trace context active at that moment, read from the current `tracing` span through
//! `tracing-opentelemetry` (or else OpenTelemetry's current context), as a W3C `traceparent` header (and
//! `tracestate` when it is not empty). The transport sends stored headers with the message, and the inbox
//! makes each handler's span a child of that context, so a consumer continues the producer's trace.
//!
//! [`RelayConfig::metric_labels`]: crate::RelayConfig::metric_labels
//! [`RelayConfig::backlog_interval`]: crate::RelayConfig::backlog_interval

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use metrics::{Counter, Histogram, Label};

use crate::message::ClaimedEvent;

/// The metric names, as in the table of the [module docs](self).
pub mod names {
    /// Gauge: pending events, by `topic`.
    pub const EVENTS_PENDING: &str = "outbox_events_pending";
    /// Gauge: age of the oldest pending event in seconds, by `topic`.
    pub const OLDEST_PENDING_AGE: &str = "outbox_oldest_pending_age_seconds";
    /// Gauge: dead-lettered events, by `topic`.
    pub const EVENTS_DEAD: &str = "outbox_events_dead";
    /// Counter: events published, by `topic` and `event_type`.
    pub const PUBLISHED: &str = "outbox_events_published_total";
    /// Counter: attempts scheduled for a retry, by `topic` and `event_type`.
    pub const RETRIED: &str = "outbox_events_retried_total";
    /// Counter: events dead-lettered, by `topic` and `event_type`.
    pub const DEAD_LETTERED: &str = "outbox_events_dead_lettered_total";
    /// Histogram: seconds the transport took for one batch.
    pub const PUBLISH_DURATION: &str = "outbox_publish_duration_seconds";
    /// Histogram: seconds from an event's insert to the broker's acknowledgement, by `topic`.
    pub const COMMIT_TO_ACK: &str = "outbox_commit_to_ack_seconds";
    /// Histogram: events per non-empty claim.
    pub const CLAIM_BATCH_SIZE: &str = "outbox_claim_batch_size";
    /// Counter: events whose lease was lost before they were recorded.
    pub const LEASE_LOST: &str = "outbox_lease_lost_total";
    /// Counter: batches that failed as a whole because the broker was unreachable.
    pub const BROKER_OUTAGES: &str = "outbox_broker_outages_total";
    /// Counter: store calls that failed and were retried.
    pub const STORE_ERRORS: &str = "outbox_store_errors_total";
    /// Counter: reconnects of the store's wake-up listener.
    pub const LISTEN_RECONNECTS: &str = "outbox_listen_reconnects_total";
}

/// Labels the relay sets itself; a user label with one of these names is ignored.
const OWN_LABELS: [&str; 2] = ["topic", "event_type"];

/// User labels turned into `metrics` labels, with more appended.
pub(crate) fn labels(base: &[(String, String)], extra: &[(&'static str, &str)]) -> Vec<Label> {
    base.iter()
        .map(|(k, v)| Label::new(k.clone(), v.clone()))
        .chain(extra.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())))
        .collect()
}

/// Records the relay's metrics. Every metric is looked up in the recorder installed when it is recorded, not
/// when the relay was made: a relay built before the exporter was installed still reports everything.
pub(crate) struct RelayMetrics {
    base: Vec<(String, String)>,
    /// `base` as `metrics` labels, for the metrics without labels of their own.
    labels: Vec<Label>,
    /// Topics the backlog gauges were set for, so a topic that empties drops to zero.
    gauged_topics: std::sync::Mutex<BTreeSet<String>>,
}

impl RelayMetrics {
    pub(crate) fn new(base: &[(String, String)]) -> Self {
        // The relay's own labels win: a user label of the same name would give one series two values for it.
        let base: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| {
                let reserved = OWN_LABELS.contains(&k.as_str());
                if reserved {
                    tracing::warn!(label = %k, "metric label ignored: the relay sets it itself");
                }
                !reserved
            })
            .cloned()
            .collect();
        let base = &base[..];
        RelayMetrics {
            base: base.to_vec(),
            labels: labels(base, &[]),
            gauged_topics: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    fn histogram(&self, name: &'static str) -> Histogram {
        metrics::histogram!(name, self.labels.clone())
    }

    fn counter(&self, name: &'static str) -> Counter {
        metrics::counter!(name, self.labels.clone())
    }

    /// Registers the relay-wide counters at zero, so that they exist (and alerts on them work) before the
    /// first outage or error.
    pub(crate) fn announce(&self) {
        for name in [
            names::LEASE_LOST,
            names::BROKER_OUTAGES,
            names::STORE_ERRORS,
        ] {
            self.counter(name).increment(0);
        }
    }

    pub(crate) fn claimed(&self, n: usize) {
        self.histogram(names::CLAIM_BATCH_SIZE).record(n as f64);
    }

    pub(crate) fn published_batch(&self, took: Duration) {
        self.histogram(names::PUBLISH_DURATION)
            .record(took.as_secs_f64());
    }

    pub(crate) fn lease_lost(&self, n: usize) {
        self.counter(names::LEASE_LOST).increment(n as u64);
    }

    pub(crate) fn outage(&self) {
        self.counter(names::BROKER_OUTAGES).increment(1);
    }

    pub(crate) fn store_error(&self) {
        self.counter(names::STORE_ERRORS).increment(1);
    }

    /// Counts events under `name`, one increment per (topic, event type).
    pub(crate) fn count_events<'a>(
        &self,
        name: &'static str,
        events: impl IntoIterator<Item = &'a ClaimedEvent>,
    ) {
        let mut groups: HashMap<(&str, &str), u64> = HashMap::new();
        for e in events {
            *groups
                .entry((e.topic.as_str(), e.event_type.as_str()))
                .or_default() += 1;
        }
        for ((topic, event_type), n) in groups {
            let l = labels(&self.base, &[("topic", topic), ("event_type", event_type)]);
            metrics::counter!(name, l).increment(n);
        }
    }

    /// Records commit→ack latencies: each event's age when claimed plus the time since the claim.
    pub(crate) fn acked<'a>(
        &self,
        events: impl IntoIterator<Item = &'a ClaimedEvent>,
        since_claim: Duration,
    ) {
        let mut by_topic: HashMap<&str, Vec<f64>> = HashMap::new();
        for e in events {
            by_topic
                .entry(e.topic.as_str())
                .or_default()
                .push((e.age + since_claim).as_secs_f64());
        }
        for (topic, values) in by_topic {
            let h = metrics::histogram!(
                names::COMMIT_TO_ACK,
                labels(&self.base, &[("topic", topic)])
            );
            for v in values {
                h.record(v);
            }
        }
    }

    /// Sets the backlog gauges; topics that were gauged before and are now absent drop to zero.
    pub(crate) fn backlog(&self, topics: &[crate::store::TopicBacklog]) {
        let mut seen = self.gauged_topics.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<String> = topics.iter().map(|t| t.topic.clone()).collect();
        for gone in seen.difference(&now) {
            self.set_topic_gauges(gone, 0, 0, Duration::ZERO);
        }
        for t in topics {
            self.set_topic_gauges(
                &t.topic,
                t.pending,
                t.dead,
                t.oldest_pending_age.unwrap_or_default(),
            );
        }
        *seen = now;
    }

    fn set_topic_gauges(&self, topic: &str, pending: u64, dead: u64, oldest: Duration) {
        let l = labels(&self.base, &[("topic", topic)]);
        metrics::gauge!(names::EVENTS_PENDING, l.clone()).set(pending as f64);
        metrics::gauge!(names::EVENTS_DEAD, l.clone()).set(dead as f64);
        metrics::gauge!(names::OLDEST_PENDING_AGE, l).set(oldest.as_secs_f64());
    }
}

/// The W3C trace context headers of the current span, if it belongs to a sampled-or-not valid trace.
#[cfg(feature = "opentelemetry")]
pub(crate) fn current_trace_headers() -> Vec<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let mut context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        context = opentelemetry::Context::current();
    }
    let span = context.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return Vec::new();
    }
    let mut headers = vec![(
        TRACEPARENT.to_owned(),
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
    )];
    let state = sc.trace_state().header();
    if !state.is_empty() {
        headers.push((TRACESTATE.to_owned(), state));
    }
    headers
}

/// The header that carries the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// Parses a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) and an optional
/// `tracestate` into a remote OpenTelemetry context to make a consumer's span a child of. `None` when the
/// header is malformed or names the invalid (all-zero) trace or span.
///
/// ```
/// use opentelemetry::trace::TraceContextExt;
/// let cx = outbox_core::telemetry::parse_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(outbox_core::telemetry::parse_traceparent("00-nonsense", None).is_none());
/// ```
#[cfg(feature = "opentelemetry")]
pub fn parse_traceparent(
    traceparent: &str,
    tracestate: Option<&str>,
) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    // Version 00 has exactly four fields; a later version may append more, and ff is forbidden.
    if !hex(version, 2)
        || version == "ff"
        || (version == "00" && parts.next().is_some())
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(trace_id, span_id, flags, true, state);
    sc.is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(sc))
}
