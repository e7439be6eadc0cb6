//! The relay's metrics, recorded through the `metrics` facade: outcomes by topic and event type with the
//! user's labels, latencies, batch sizes, and backlog gauges that fall back to zero.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use outbox_core::memory::{MemoryStore, MemoryTransport};
use outbox_core::telemetry::names;
use outbox_core::{CancellationToken, OutboxEvent, Relay, RelayConfig, RetryPolicy, Store};
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", event_type = "order.placed.v1")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "payments", event_type = "payment.taken.v1")]
struct PaymentTaken {
    #[outbox(key)]
    order_id: u64,
}

/// What was recorded since the last snapshot (taking one resets every value).
type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn snapshot(s: &Snapshotter) -> Snapshot {
    s.snapshot().into_vec()
}

/// The value of the metric `name` of `kind` whose labels include every pair in `labels`.
fn value<'a>(
    snapshot: &'a Snapshot,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, _, _, _)| {
            key.kind() == kind
                && key.key().name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(_, _, _, v)| v)
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(s, MetricKind::Counter, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("counter {name} {labels:?}: {other:?}"),
    }
}

fn gauge(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(s, MetricKind::Gauge, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("gauge {name} {labels:?}: {other:?}"),
    }
}

fn histogram(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    match value(s, MetricKind::Histogram, name, labels) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|f| f.into_inner()).collect(),
        other => panic!("histogram {name} {labels:?}: {other:?}"),
    }
}

/// Runs `f` on a current-thread runtime with paused time and a recorder of its own.
fn with_recorder(f: impl AsyncFnOnce(&Snapshotter)) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f(&snapshotter))
    });
}

fn config() -> RelayConfig {
    RelayConfig {
        max_attempts: 2,
        retry: RetryPolicy {
            initial: Duration::from_secs(1),
            multiplier: 1.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        },
        metric_labels: vec![("service".into(), "shop".into())],
        backlog_interval: None,
        ..RelayConfig::default()
    }
}

#[test]
fn outcomes_are_counted_by_topic_and_event_type_with_the_user_labels() {
    with_recorder(async |m| {
        let store = MemoryStore::new();
        let transport = MemoryTransport::new();
        for order_id in 0..5 {
            store.enqueue(&OrderPlaced { order_id }).unwrap();
        }
        store.enqueue(&PaymentTaken { order_id: 1 }).unwrap();
        store.enqueue(&PaymentTaken { order_id: 2 }).unwrap();
        // Payment 2 fails twice: one retry, then dead-lettered at its second attempt.
        transport.reject_key("payments", "2", 2, "message too large");
        tokio::time::advance(Duration::from_millis(250)).await;
        let relay = Relay::new(store.clone(), transport.clone(), config());

        relay.run_once().await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        relay.run_once().await.unwrap();

        let m = &snapshot(m);
        let service = ("service", "shop");
        let orders = [
            service,
            ("topic", "orders"),
            ("event_type", "order.placed.v1"),
        ];
        let payments = [
            service,
            ("topic", "payments"),
            ("event_type", "payment.taken.v1"),
        ];
        assert_eq!(counter(m, names::PUBLISHED, &orders), 5);
        assert_eq!(counter(m, names::PUBLISHED, &payments), 1);
        assert_eq!(counter(m, names::RETRIED, &payments), 1);
        assert_eq!(counter(m, names::DEAD_LETTERED, &payments), 1);
        assert_eq!(
            histogram(m, names::CLAIM_BATCH_SIZE, &[service]),
            vec![7.0, 1.0],
            "one value per non-empty claim"
        );
        assert_eq!(histogram(m, names::PUBLISH_DURATION, &[service]).len(), 2);
        // Every published event's commit→ack latency, at least the 250 ms it waited before the claim.
        let acks = histogram(m, names::COMMIT_TO_ACK, &[service, ("topic", "orders")]);
        assert_eq!(acks.len(), 5);
        assert!(acks.iter().all(|s| (0.25..1.0).contains(s)), "{acks:?}");
        assert_eq!(counter(m, names::LEASE_LOST, &[service]), 0);
    });
}

/// The memory store, except that lease extensions are lost (as when the relay cannot reach the database while
/// it publishes): the lease runs out whatever the heartbeat does.
struct HeartbeatsLost(MemoryStore);

#[async_trait::async_trait]
impl Store for HeartbeatsLost {
    async fn claim_batch(
        &self,
        owner: outbox_core::LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<outbox_core::ClaimedEvent>, outbox_core::StoreError> {
        self.0.claim_batch(owner, limit, lease).await
    }
    async fn extend_lease(
        &self,
        _: outbox_core::LeaseOwner,
        _: &[uuid::Uuid],
        _: Duration,
    ) -> Result<Vec<uuid::Uuid>, outbox_core::StoreError> {
        Ok(Vec::new())
    }
    async fn complete(
        &self,
        owner: outbox_core::LeaseOwner,
        completion: &outbox_core::Completion,
    ) -> Result<outbox_core::CompletionReport, outbox_core::StoreError> {
        self.0.complete(owner, completion).await
    }
    async fn delete_published(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, outbox_core::StoreError> {
        self.0.delete_published(older_than, limit).await
    }
}

/// A transport that lets the lease run out mid-publish and another relay take the events, then succeeds.
struct SlowerThanTheLease {
    store: MemoryStore,
}

#[async_trait::async_trait]
impl outbox_core::Transport for SlowerThanTheLease {
    async fn publish(
        &self,
        batch: &[outbox_core::ClaimedEvent],
    ) -> Vec<Result<(), outbox_core::PublishError>> {
        tokio::time::advance(Duration::from_secs(4)).await;
        let taken = self
            .store
            .claim_batch(
                outbox_core::LeaseOwner::random(),
                10,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(
            taken.len(),
            batch.len(),
            "the other relay takes the expired lease"
        );
        batch.iter().map(|_| Ok(())).collect()
    }
}

#[test]
fn a_broker_outage_and_a_lost_lease_are_counted() {
    with_recorder(async |m| {
        let store = MemoryStore::new();
        let transport = MemoryTransport::new();
        store.enqueue(&OrderPlaced { order_id: 1 }).unwrap();
        let relay = Relay::new(store.clone(), transport.clone(), config());
        transport.set_unavailable(true);
        relay.run_once().await.unwrap();
        let outage = snapshot(m);
        assert_eq!(
            counter(&outage, names::BROKER_OUTAGES, &[("service", "shop")]),
            1
        );
        assert!(value(&outage, MetricKind::Counter, names::PUBLISHED, &[]).is_none());

        let relay = Relay::new(
            HeartbeatsLost(store.clone()),
            SlowerThanTheLease {
                store: store.clone(),
            },
            RelayConfig {
                lease: Duration::from_secs(3),
                ..config()
            },
        );
        let report = relay.run_once().await.unwrap();
        assert_eq!(report.lease_lost, 1);
        let lost = snapshot(m);
        assert_eq!(counter(&lost, names::LEASE_LOST, &[("service", "shop")]), 1);
        assert!(
            value(&lost, MetricKind::Counter, names::PUBLISHED, &[])
                .is_none_or(|v| matches!(v, DebugValue::Counter(0))),
            "an event whose mark was refused is not counted as published by this relay"
        );
    });
}

#[test]
fn backlog_gauges_follow_the_store_and_drop_to_zero_when_a_topic_empties() {
    with_recorder(async |m| {
        let store = MemoryStore::new();
        let transport = MemoryTransport::new();
        for order_id in 0..3 {
            store.enqueue(&OrderPlaced { order_id }).unwrap();
        }
        store.enqueue(&PaymentTaken { order_id: 9 }).unwrap();
        transport.reject_key("payments", "9", 1, "refused");
        let relay = std::sync::Arc::new(Relay::new(
            store.clone(),
            transport.clone(),
            RelayConfig {
                max_attempts: 1,
                backlog_interval: Some(Duration::from_secs(5)),
                ..config()
            },
        ));
        transport.set_unavailable(true);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let (relay, shutdown) = (relay.clone(), shutdown.clone());
            async move { relay.run(shutdown).await }
        });
        tokio::time::advance(Duration::from_secs(3)).await;
        tokio::task::yield_now().await;
        let orders = [("service", "shop"), ("topic", "orders")];
        let during = snapshot(m);
        assert_eq!(gauge(&during, names::EVENTS_PENDING, &orders), 3.0);
        assert!(gauge(&during, names::OLDEST_PENDING_AGE, &orders) >= 3.0);
        assert!(counter(&during, names::BROKER_OUTAGES, &[("service", "shop")]) >= 1);

        transport.set_unavailable(false);
        // Let the relay publish and the next refresh run.
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(100)).await;
            tokio::task::yield_now().await;
        }
        let payments = [("service", "shop"), ("topic", "payments")];
        let m = &snapshot(m);
        assert_eq!(
            gauge(m, names::EVENTS_PENDING, &orders),
            0.0,
            "orders emptied"
        );
        assert_eq!(gauge(m, names::OLDEST_PENDING_AGE, &orders), 0.0);
        assert_eq!(gauge(m, names::EVENTS_DEAD, &payments), 1.0);
        assert_eq!(gauge(m, names::EVENTS_PENDING, &payments), 0.0);
        shutdown.cancel();
        running.await.unwrap().unwrap();
    });
}

#[test]
fn a_relay_made_before_the_recorder_was_installed_still_records_every_metric() {
    // Made with no recorder installed (e.g. the exporter is set up after the relay is built).
    let store = MemoryStore::new();
    let transport = MemoryTransport::new();
    store.enqueue(&OrderPlaced { order_id: 1 }).unwrap();
    let relay = Relay::new(store.clone(), transport.clone(), config());
    with_recorder(async |m| {
        transport.set_unavailable(true);
        relay.run_once().await.unwrap();
        transport.set_unavailable(false);
        relay.run_once().await.unwrap();
        let s = snapshot(m);
        assert_eq!(
            counter(
                &s,
                names::PUBLISHED,
                &[("service", "shop"), ("topic", "orders")]
            ),
            1
        );
        assert_eq!(
            counter(&s, names::BROKER_OUTAGES, &[("service", "shop")]),
            1,
            "{s:?}"
        );
        assert_eq!(
            histogram(&s, names::CLAIM_BATCH_SIZE, &[("service", "shop")]),
            [1.0, 1.0]
        );
    });
}
