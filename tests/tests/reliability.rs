//! The reliability cases of `shared/cases/RELIABILITY.md`, each a test named after its id, on real PostgreSQL and
//! the real broker (tansu); librdkafka's mock cluster where a broker fault must be injected on demand (R7). R8
//! measures CPU time and runs in its own process (`r08_idle_cpu.rs`); the chaos test is `chaos.rs`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{arrival_order, commit_events, read_back, Ev, FaultyTransport, Shared};
use outbox_core::{
    ClaimedEvent, Completion, CompletionReport, LeaseOwner, Relay, RelayConfig, RetryPolicy, Store,
    StoreError,
};
use outbox_examples::{check_delivery, ExpectedEvent};
use outbox_postgres::{PgStore, ReplaySelector};
use tokio::sync::watch;
use uuid::Uuid;

fn quick_retries(max_attempts: u32) -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(200),
        max_attempts,
        retry: RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            jitter: 0.1,
            ..RetryPolicy::default()
        },
        ..RelayConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r01_a_transaction_that_commits_late_is_not_skipped() {
    let (pool, config, outbox, brokers) = common::setup("r01", &[("r01.events", 2)]).await;
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        common::relay_config(),
    );

    // T1 takes its position first and stays open; T2 takes a later one and commits.
    let mut t1 = pool.begin().await.expect("begin");
    let early = Ev::new("r01.events", "a", 1);
    let early_id = outbox.enqueue(&mut t1, &early).await.expect("enqueue");
    let late = commit_events(&pool, &outbox, &[Ev::new("r01.events", "b", 2)]).await;
    let got = read_back(&brokers, &["r01.events"], &late, Duration::from_secs(15)).await;
    assert_eq!(
        check_delivery(&late, &HashSet::new(), &got).missing,
        0,
        "T2's event is delivered while T1 is open"
    );

    t1.commit().await.expect("commit");
    let mut expected = vec![ExpectedEvent::of(early_id, &early)];
    expected.extend(late);
    let got = read_back(
        &brokers,
        &["r01.events"],
        &expected,
        Duration::from_secs(15),
    )
    .await;
    relay.stop().await;
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(
        report.is_perfect(),
        "the late commit is delivered too: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r02_a_rolled_back_event_leaves_no_hole_to_wait_for() {
    let (pool, mut config, _, brokers) = common::setup("r02", &[("r02.events", 1)]).await;
    config.notify = false; // polling alone must not wait for the hole
    let outbox = common::outbox(&config);
    let poll = Duration::from_secs(1);
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        RelayConfig {
            poll_interval: poll,
            ..RelayConfig::default()
        },
    );

    let first = commit_events(&pool, &outbox, &[Ev::new("r02.events", "k", 1)]).await;
    let mut tx = pool.begin().await.expect("begin");
    let hole = outbox
        .enqueue(&mut tx, &Ev::new("r02.events", "k", 2))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    let third = commit_events(&pool, &outbox, &[Ev::new("r02.events", "k", 3)]).await;
    let committed = Instant::now();

    let got = read_back(&brokers, &["r02.events"], &third, Duration::from_secs(10)).await;
    let waited = committed.elapsed();
    relay.stop().await;
    let mut expected = first;
    expected.extend(third);
    let report = check_delivery(&expected, &HashSet::from([hole]), &got);
    assert!(report.is_perfect(), "{report:#?}");
    // One poll interval, plus the publish and the read-back that follow it.
    assert!(
        waited < poll + Duration::from_millis(1500),
        "event 3 waited {waited:?}"
    );
}

/// Counts the largest claim, to show the relay works through a huge transaction in bounded batches.
struct CountingStore {
    inner: PgStore,
    largest_claim: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    async fn claim_batch(
        &self,
        owner: LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let batch = self.inner.claim_batch(owner, limit, lease).await?;
        self.largest_claim
            .fetch_max(batch.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(batch)
    }
    async fn extend_lease(
        &self,
        owner: LeaseOwner,
        ids: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.inner.extend_lease(owner, ids, lease).await
    }
    async fn complete(
        &self,
        owner: LeaseOwner,
        completion: &Completion,
    ) -> Result<CompletionReport, StoreError> {
        self.inner.complete(owner, completion).await
    }
    async fn wakeups(&self, labels: &[(String, String)]) -> Option<watch::Receiver<u64>> {
        self.inner.wakeups(labels).await
    }
    async fn delete_published(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.delete_published(older_than, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r03_a_20000_event_transaction_is_delivered_in_order_in_bounded_batches() {
    let (pool, config, outbox, brokers) =
        common::setup("r03", &[("r03.batch", 3), ("r03.single", 3)]).await;
    let keys = 40;
    // One transaction through the batch API...
    let batch: Vec<Ev> = (0..20_000)
        .map(|n| Ev::new("r03.batch", &format!("k{}", n % keys), n))
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    let ids = outbox
        .enqueue_all(&mut tx, &batch)
        .await
        .expect("enqueue_all");
    tx.commit().await.expect("commit");
    let mut expected: Vec<ExpectedEvent> = ids
        .iter()
        .zip(&batch)
        .map(|(id, e)| ExpectedEvent::of(*id, e))
        .collect();
    // ...and one through 20,000 single calls.
    let single: Vec<Ev> = (0..20_000)
        .map(|n| Ev::new("r03.single", &format!("k{}", n % keys), n))
        .collect();
    expected.extend(commit_events(&pool, &outbox, &single).await);

    let store = CountingStore {
        inner: PgStore::new(pool.clone(), config.clone()),
        largest_claim: Default::default(),
    };
    let store = Arc::new(store);
    let relay = Relay::from_arcs(
        store.clone(),
        Arc::new(common::kafka(&brokers)),
        RelayConfig {
            batch_size: 500,
            ..common::relay_config()
        },
    );
    let shutdown = outbox_core::CancellationToken::new();
    let token = shutdown.clone();
    let running = tokio::spawn(async move { relay.run(token).await });

    let got = read_back(
        &brokers,
        &["r03.batch", "r03.single"],
        &expected,
        Duration::from_secs(30),
    )
    .await;
    shutdown.cancel();
    running.await.expect("task").expect("relay");
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(report.delivered, 40_000);
    let largest = store
        .largest_claim
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest > 0 && largest <= 500,
        "claims are bounded by the batch size: largest {largest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r04_three_relays_one_slowed_down_keep_a_keys_order() {
    let (pool, config, outbox, brokers) = common::setup("r04", &[("r04.events", 3)]).await;
    let slow = FaultyTransport::new(common::kafka(&brokers)).slow(Duration::from_millis(700));
    let mut relays = vec![common::spawn_relay(
        &pool,
        &config,
        Shared(slow),
        common::relay_config(),
    )];
    for _ in 0..2 {
        relays.push(common::spawn_relay(
            &pool,
            &config,
            common::kafka(&brokers),
            common::relay_config(),
        ));
    }
    let mut expected = Vec::new();
    for n in 1..=10 {
        // One transaction per event, committed one after the other, while the relays run.
        expected.extend(commit_events(&pool, &outbox, &[Ev::new("r04.events", "k", n)]).await);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let got = read_back(
        &brokers,
        &["r04.events"],
        &expected,
        Duration::from_secs(20),
    )
    .await;
    let mut lost = 0;
    for relay in relays {
        lost += relay.stop().await.lease_lost;
    }
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(
        arrival_order(&got, &expected, "k"),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_a_failed_event_holds_back_its_key_while_other_keys_flow() {
    let (pool, config, outbox, brokers) = common::setup("r05", &[("r05.events", 2)]).await;
    let transport = FaultyTransport::new(common::kafka(&brokers));
    let expected = commit_events(
        &pool,
        &outbox,
        &[
            Ev::new("r05.events", "k", 1),
            Ev::new("r05.events", "k", 2),
            Ev::new("r05.events", "l", 1),
        ],
    )
    .await;
    let a = expected[0].id;
    transport.reject(a, 3);
    let relay = common::spawn_relay(&pool, &config, Shared(transport.clone()), quick_retries(10));

    // L arrives while A is still waiting for its retry.
    let l_only = vec![expected[2].clone()];
    let got = read_back(&brokers, &["r05.events"], &l_only, Duration::from_secs(10)).await;
    assert_eq!(
        check_delivery(&l_only, &HashSet::new(), &got).missing,
        0,
        "other keys flow"
    );
    let (status, attempts, error) = common::status_of(&pool, &config, a)
        .await
        .expect("A is still there");
    assert_eq!(status, "pending");
    assert!(attempts >= 1 && error.unwrap_or_default().contains("injected"));
    let b_seen = got.iter().any(|m| m.event_id() == Some(expected[1].id));
    assert!(!b_seen, "B must not overtake A");

    let got = read_back(
        &brokers,
        &["r05.events"],
        &expected,
        Duration::from_secs(15),
    )
    .await;
    let stats = relay.stop().await;
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(arrival_order(&got, &expected, "k"), vec![1, 2]);
    assert_eq!(stats.retried, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r06_an_oversized_event_is_dead_lettered_with_the_brokers_error_and_its_key_moves_on() {
    let (pool, config, outbox, brokers) = common::setup("r06", &[("r06.events", 2)]).await;
    // The producer's limit stands for the broker's: librdkafka refuses the message before sending it.
    let limited = common::kafka_with(&brokers, &[("message.max.bytes", "100000")]);
    let events = [
        Ev::padded("r06.events", "k", 1, 200_000),
        Ev::new("r06.events", "k", 2),
        Ev::new("r06.events", "k", 3),
        Ev::new("r06.events", "l", 1),
    ];
    let expected = commit_events(&pool, &outbox, &events).await;
    let big = expected[0].id;
    let relay = common::spawn_relay(&pool, &config, limited, quick_retries(3));

    let rest: Vec<ExpectedEvent> = expected[1..].to_vec();
    let got = read_back(&brokers, &["r06.events"], &rest, Duration::from_secs(20)).await;
    let stats = relay.stop().await;
    let report = check_delivery(&rest, &HashSet::new(), &got);
    assert!(report.is_perfect(), "2, 3 and L1 arrive: {report:#?}");
    assert_eq!(
        arrival_order(&got, &expected, "k"),
        vec![2, 3],
        "2 and 3 in order, after the decision on 1"
    );
    let (status, attempts, error) = common::status_of(&pool, &config, big).await.expect("row");
    assert_eq!((status.as_str(), attempts), ("dead", 3));
    let error = error.unwrap_or_default();
    assert!(
        error.to_lowercase().contains("size") || error.contains("large"),
        "the broker's error is recorded: {error}"
    );
    assert_eq!(stats.dead_lettered, 1);

    // An operator raises the limit and replays it: delivered, after the events already out.
    let store = PgStore::new(pool.clone(), config.clone());
    assert_eq!(
        store
            .replay(ReplaySelector::Key {
                topic: "r06.events".into(),
                key: "k".into()
            })
            .await
            .expect("replay"),
        vec![big]
    );
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka_with(&brokers, &[("message.max.bytes", "1000000")]),
        quick_retries(3),
    );
    let got = read_back(
        &brokers,
        &["r06.events"],
        &expected,
        Duration::from_secs(20),
    )
    .await;
    relay.stop().await;
    assert_eq!(check_delivery(&expected, &HashSet::new(), &got).missing, 0);
    assert_eq!(arrival_order(&got, &expected, "k"), vec![2, 3, 1]);
}

#[tokio::test]
async fn r07_producer_settings_that_break_idempotence_or_order_are_refused() {
    for (key, value) in [
        ("enable.idempotence", "false"),
        ("acks", "1"),
        ("max.in.flight.requests.per.connection", "10"),
        ("retries", "0"),
    ] {
        let result = outbox_kafka::KafkaTransport::new(
            outbox_kafka::KafkaTransportConfig::new("127.0.0.1:9").set(key, value),
        );
        let error = result
            .err()
            .unwrap_or_else(|| panic!("{key}={value} must be refused"));
        assert!(
            error.to_string().contains(key),
            "the error names the setting: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r07_per_partition_order_survives_a_broker_outage_in_the_middle_of_a_batch() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::Message;

    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic("r07.events", 1, 1).expect("topic");
    cluster
        .partition_leader("r07.events", 0, Some(1))
        .expect("leader");
    let brokers = cluster.bootstrap_servers();
    let transport = outbox_kafka::KafkaTransport::new(
        outbox_kafka::KafkaTransportConfig::new(&brokers).delivery_timeout(Duration::from_secs(20)),
    )
    .expect("transport");
    let batch: Vec<ClaimedEvent> = (0..3_000)
        .map(|n| ClaimedEvent {
            id: Uuid::now_v7(),
            seq: n,
            topic: "r07.events".into(),
            key: "k".into(),
            event_type: "test.event".into(),
            aggregate_type: "test".into(),
            version: None,
            payload: format!("{{\"n\":{n}}}"),
            headers: vec![],
            attempts: 1,
            last_error: None,
            age: Duration::ZERO,
        })
        .collect();
    let publishing = {
        let batch = batch.clone();
        async move { outbox_core::Transport::publish(&transport, &batch).await }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cluster.broker_down(1).expect("down");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.broker_up(1).expect("up");
    };
    let (results, ()) = tokio::join!(publishing, outage);
    assert!(
        results.iter().all(|r| r.is_ok()),
        "every event acknowledged after the outage"
    );

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "r07")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["r07.events"]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < batch.len() {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("messages arrive")
            .expect("message");
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
        seen.push(v["n"].as_i64().unwrap_or(-1));
    }
    let expected: Vec<i64> = (0..3_000).collect();
    assert_eq!(
        seen, expected,
        "no gaps, duplicates or reordering in the partition"
    );
}

/// A store whose heartbeat does nothing: its relay loses its leases while a slow publish runs.
struct StalledHeartbeat(PgStore);

#[async_trait]
impl Store for StalledHeartbeat {
    async fn claim_batch(
        &self,
        owner: LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        self.0.claim_batch(owner, limit, lease).await
    }
    async fn extend_lease(
        &self,
        _: LeaseOwner,
        _: &[Uuid],
        _: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(Vec::new())
    }
    async fn complete(
        &self,
        owner: LeaseOwner,
        completion: &Completion,
    ) -> Result<CompletionReport, StoreError> {
        self.0.complete(owner, completion).await
    }
    async fn delete_published(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.0.delete_published(older_than, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r09_a_lease_shorter_than_the_publish_is_extended_or_its_loss_detected() {
    let (pool, config, outbox, brokers) = common::setup("r09", &[("r09.events", 2)]).await;
    let lease = Duration::from_millis(600);

    // A healthy relay extends its lease while a slow publish runs: nobody takes its events, no duplicates.
    let expected = commit_events(
        &pool,
        &outbox,
        &(1..=5)
            .map(|n| Ev::new("r09.events", "k", n))
            .collect::<Vec<_>>(),
    )
    .await;
    let slow = FaultyTransport::new(common::kafka(&brokers)).slow(Duration::from_millis(2000));
    let config_with_lease = RelayConfig {
        lease,
        ..common::relay_config()
    };
    let healthy = common::spawn_relay(&pool, &config, Shared(slow), config_with_lease.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rival = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        config_with_lease.clone(),
    );
    let got = read_back(
        &brokers,
        &["r09.events"],
        &expected,
        Duration::from_secs(15),
    )
    .await;
    let (a, b) = (healthy.stop().await, rival.stop().await);
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(
        (a.lease_lost, b.lease_lost, a.published + b.published),
        (0, 0, 5)
    );

    // A relay whose heartbeat stalls loses its lease to another; its late marks are refused and reported, and
    // the attempt it made is counted.
    let expected = commit_events(
        &pool,
        &outbox,
        &(6..=8)
            .map(|n| Ev::new("r09.events", "m", n))
            .collect::<Vec<_>>(),
    )
    .await;
    let stalled = Relay::new(
        StalledHeartbeat(PgStore::new(pool.clone(), config.clone())),
        Shared(FaultyTransport::new(common::kafka(&brokers)).slow(Duration::from_millis(2000))),
        config_with_lease.clone(),
    );
    let stalled_pass = tokio::spawn(async move {
        let pass = stalled.run_once().await.expect("pass");
        (pass, stalled.stats())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let taker = common::spawn_relay(&pool, &config, common::kafka(&brokers), config_with_lease);
    let (pass, stats) = stalled_pass.await.expect("stalled relay");
    let got = read_back(
        &brokers,
        &["r09.events"],
        &expected,
        Duration::from_secs(15),
    )
    .await;
    taker.stop().await;
    assert_eq!(pass.claimed, 3);
    assert_eq!(pass.lease_lost, 3, "{pass:?}");
    assert_eq!(stats.lease_lost, 3);
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert_eq!((report.missing, report.out_of_order), (0, 0), "{report:#?}");
    assert_eq!(
        report.duplicates, 3,
        "both relays sent them: the duplicates carry the same event id"
    );
    assert_eq!(arrival_order(&got, &expected, "m"), vec![6, 7, 8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_sustained_load_with_retention_keeps_the_table_bounded() {
    let (pool, mut config, _, brokers) = common::setup("r10", &[("r10.events", 3)]).await;
    config.keep_published = true;
    let outbox = common::outbox(&config);
    let retention = Duration::from_millis(500);
    const PAYLOAD: usize = 1_000;
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        RelayConfig {
            retention: Some(retention),
            cleanup_interval: Duration::from_millis(200),
            cleanup_batch: 200,
            ..common::relay_config()
        },
    );
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        writers.push(tokio::spawn(async move {
            let mut written = 0u64;
            while Instant::now() < stop_at {
                let events: Vec<Ev> = (0..5)
                    .map(|i| {
                        Ev::padded(
                            "r10.events",
                            &format!("w{w}-{}", i % 3),
                            written + i,
                            PAYLOAD,
                        )
                    })
                    .collect();
                commit_events(&pool, &outbox, &events).await;
                written += 5;
                // A steady rate (about 1,000 events/s over four writers), as a service would produce.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            written
        }));
    }
    let table = config.table.quoted();
    let mut most_rows = 0i64;
    let mut sizes = Vec::new();
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        let size: i64 = sqlx::query_scalar(&format!("SELECT pg_total_relation_size('{table}')"))
            .fetch_one(&pool)
            .await
            .expect("size");
        most_rows = most_rows.max(rows);
        sizes.push(size);
    }
    let mut written = 0;
    for w in writers {
        written += w
            .await
            .expect("every writer transaction committed: no deadlock with cleanup");
    }
    // Let the relay publish and clean up what is left.
    let deadline = Instant::now() + Duration::from_secs(20);
    let remaining = loop {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        if rows == 0 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = relay.stop().await;
    println!("r10: {written} events written, at most {most_rows} rows live, sizes {sizes:?}");
    assert_eq!(stats.published, written, "{stats:?}");
    assert_eq!(remaining, 0, "everything published was cleaned up");
    assert!(
        (most_rows as u64) < written / 3,
        "live rows stayed bounded: at most {most_rows} of {written}"
    );
    // Keeping every event would take more than `written` KB (three times that in row versions); cleanup and
    // vacuum keep the table to a fraction of it once it reaches its steady state (the second half of the run).
    let steady = sizes[sizes.len() / 2..].iter().copied().max().unwrap_or(0) as u64;
    assert!(
        steady < written * PAYLOAD as u64 / 2,
        "the table's size stayed bounded: {sizes:?} for {written} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_killed_listen_connection_is_rebuilt_and_wakes_the_relay() {
    let (pool, config, outbox, brokers) = common::setup("r11", &[("r11.events", 1)]).await;
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        RelayConfig {
            poll_interval: Duration::from_secs(60),
            ..RelayConfig::default()
        },
    );
    let channel = config.channel();
    let listen_pids = || {
        let (pool, query) = (
            pool.clone(),
            format!("SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"{channel}\"'"),
        );
        async move {
            sqlx::query_scalar::<_, i32>(&query)
                .fetch_all(&pool)
                .await
                .expect("pids")
        }
    };
    let mut pids = Vec::new();
    for _ in 0..50 {
        pids = listen_pids().await;
        if !pids.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pids.len(), 1, "the relay listens");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .fetch_one(&pool)
        .await
        .expect("terminate");
    assert!(killed);
    let mut rebuilt = Vec::new();
    for _ in 0..100 {
        rebuilt = listen_pids().await;
        if !rebuilt.is_empty() && rebuilt != pids {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !rebuilt.is_empty() && rebuilt != pids,
        "the listener reconnected: {pids:?} → {rebuilt:?}"
    );

    let expected = commit_events(&pool, &outbox, &[Ev::new("r11.events", "k", 1)]).await;
    let committed = Instant::now();
    let got = read_back(
        &brokers,
        &["r11.events"],
        &expected,
        Duration::from_secs(10),
    )
    .await;
    let waited = committed.elapsed();
    relay.stop().await;
    assert_eq!(check_delivery(&expected, &HashSet::new(), &got).missing, 0);
    assert!(
        waited < Duration::from_secs(10),
        "woken, not polled after 60 s: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_a_1_mib_payload_is_enqueued_and_delivered() {
    let (pool, config, outbox, brokers) = common::setup("r12", &[("r12.events", 1)]).await;
    let big = Ev::padded("r12.events", "k", 1, 1 << 20);
    let expected = commit_events(&pool, &outbox, &[big]).await;
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka_with(&brokers, &[("message.max.bytes", "4194304")]),
        common::relay_config(),
    );
    let got = read_back(
        &brokers,
        &["r12.events"],
        &expected,
        Duration::from_secs(20),
    )
    .await;
    relay.stop().await;
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(
        report.is_perfect(),
        "missing {} duplicates {} mismatches {}",
        report.missing,
        report.duplicates,
        report.mismatches.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_sixteen_writers_get_one_empty_notification_per_transaction_and_can_turn_it_off() {
    let pool = common::pool().await;
    for notify in [true, false] {
        let mut config =
            common::fresh_outbox(&pool, if notify { "r13_on" } else { "r13_off" }).await;
        config.notify = notify;
        let outbox = common::outbox(&config);
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .expect("listener");
        listener.listen(&config.channel()).await.expect("listen");

        let per_writer = 25;
        let started = Instant::now();
        let mut writers = Vec::new();
        for w in 0..16 {
            let (pool, outbox) = (pool.clone(), outbox.clone());
            writers.push(tokio::spawn(async move {
                for n in 0..per_writer {
                    // Two events per transaction: still one notification.
                    let events = [
                        Ev::new("r13.events", &format!("w{w}"), n * 2),
                        Ev::new("r13.events", &format!("w{w}"), n * 2 + 1),
                    ];
                    commit_events(&pool, &outbox, &events).await;
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        let elapsed = started.elapsed();
        let mut notifications = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), listener.recv()).await
        {
            assert_eq!(
                n.payload(),
                "",
                "no payload: nothing of the event travels in the notification"
            );
            notifications += 1;
        }
        let transactions = 16 * per_writer as usize;
        println!(
            "r13: notify={notify}: {transactions} transactions in {elapsed:?} ({:.0}/s)",
            transactions as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(notifications, if notify { transactions } else { 0 });
    }
}

#[tokio::test]
async fn r14_leases_retries_and_retention_are_measured_by_the_database_clock() {
    let pool = common::pool().await;
    let mut config = common::fresh_outbox(&pool, "r14").await;
    config.keep_published = true;
    let outbox = common::outbox(&config);
    let store = PgStore::new(pool.clone(), config.clone());
    commit_events(
        &pool,
        &outbox,
        &[Ev::new("r14.events", "a", 1), Ev::new("r14.events", "b", 1)],
    )
    .await;
    let owner = LeaseOwner::random();
    let claimed = store
        .claim_batch(owner, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let table = config.table.quoted();
    let lease_left: f64 = sqlx::query_scalar(&format!(
        "SELECT min(extract(epoch FROM lease_until - now()))::float8 FROM {table}"
    ))
    .fetch_one(&pool)
    .await
    .expect("lease");
    assert!(
        (29.0..=30.0).contains(&lease_left),
        "lease_until = database now() + 30 s (left {lease_left})"
    );

    store
        .complete(
            owner,
            &Completion {
                published: vec![claimed[0].id],
                retries: vec![outbox_core::Retry {
                    id: claimed[1].id,
                    delay: Duration::from_secs(300),
                    error: "x".into(),
                    counted: true,
                }],
                ..Completion::default()
            },
        )
        .await
        .expect("complete");
    let (retry_in, published_ago): (f64, f64) = sqlx::query_as(&format!(
        "SELECT (SELECT extract(epoch FROM available_at - now())::float8 FROM {table} WHERE id = $2), \
                (SELECT extract(epoch FROM now() - published_at)::float8 FROM {table} WHERE id = $1)"
    ))
    .bind(claimed[0].id)
    .bind(claimed[1].id)
    .fetch_one(&pool)
    .await
    .expect("times");
    assert!(
        (299.0..=300.0).contains(&retry_in),
        "retry at database now() + 5 min (in {retry_in})"
    );
    assert!(
        (0.0..1.0).contains(&published_ago),
        "published_at is the database's now()"
    );
    // Nothing is claimable early: the retry waits its 5 minutes on the database's clock, whatever this host's says.
    assert!(store
        .claim_batch(LeaseOwner::random(), 10, Duration::from_secs(30))
        .await
        .expect("claim")
        .is_empty());
    // Retention counts from published_at on the same clock: not yet old enough to delete.
    assert_eq!(
        store
            .delete_published(Duration::from_secs(60), 100)
            .await
            .expect("cleanup"),
        0
    );
    assert_eq!(
        store
            .delete_published(Duration::ZERO, 100)
            .await
            .expect("cleanup"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_an_empty_key_stay_on_one_partition_in_order() {
    let (pool, config, outbox, brokers) =
        common::setup("empty_key", &[("empty-key.events", 4)]).await;
    let expected = commit_events(
        &pool,
        &outbox,
        &(0..30)
            .map(|n| Ev::new("empty-key.events", "", n))
            .collect::<Vec<_>>(),
    )
    .await;
    let relay = common::spawn_relay(
        &pool,
        &config,
        common::kafka(&brokers),
        common::relay_config(),
    );
    let got = read_back(
        &brokers,
        &["empty-key.events"],
        &expected,
        Duration::from_secs(15),
    )
    .await;
    relay.stop().await;
    let report = check_delivery(&expected, &HashSet::new(), &got);
    assert!(report.is_perfect(), "{report:#?}");
    let ours: HashSet<Uuid> = expected.iter().map(|e| e.id).collect();
    let partitions: HashSet<i32> = got
        .iter()
        .filter(|m| m.event_id().is_some_and(|id| ours.contains(&id)))
        .map(|m| m.partition)
        .collect();
    assert_eq!(
        partitions.len(),
        1,
        "one partition for the empty key: {partitions:?}"
    );
    assert_eq!(
        arrival_order(&got, &expected, ""),
        (0..30).collect::<Vec<_>>()
    );
}
