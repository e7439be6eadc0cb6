//! R8: an event that can never be sent (its topic does not exist and the broker creates none) backs off and is
//! dead-lettered, 1,000 events of other keys behind it are delivered, and the relay burns no CPU while it waits.
//! In its own test binary so that the CPU time measured is this relay's alone.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{commit_events, read_back, Ev};
use outbox_core::{RelayConfig, RetryPolicy};
use outbox_examples::check_delivery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r08_an_unsendable_event_is_dead_lettered_while_a_thousand_others_flow_without_busy_waiting(
) {
    let (pool, config, outbox, brokers) = common::setup("r08", &[("r08.events", 3)]).await;

    let bad = commit_events(&pool, &outbox, &[Ev::new("r08.no-such-topic", "poison", 0)]).await;
    let good: Vec<Ev> = (0..1_000)
        .map(|n| Ev::new("r08.events", &format!("k{}", n % 50), n))
        .collect();
    let good = commit_events(&pool, &outbox, &good).await;

    let transport = common::kafka_with(
        &brokers,
        &[
            ("topic.metadata.propagation.max.ms", "500"),
            ("message.timeout.ms", "3000"),
        ],
    );
    let relay = common::spawn_relay(
        &pool,
        &config,
        transport,
        RelayConfig {
            poll_interval: Duration::from_millis(100),
            max_attempts: 4,
            retry: RetryPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(4),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..RelayConfig::default()
        },
    );
    let got = read_back(&brokers, &["r08.events"], &good, Duration::from_secs(20)).await;
    let report = check_delivery(&good, &HashSet::new(), &got);
    assert!(
        report.is_perfect(),
        "the other keys are delivered: {report:#?}"
    );

    // Now only the poison event is left, waiting out its backoff: the relay must sleep, not spin.
    let (cpu, wall) = (common::cpu_time(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        let (status, attempts, error) = common::status_of(&pool, &config, bad[0].id)
            .await
            .expect("row");
        if status == "dead" || Instant::now() > deadline {
            break (status, attempts, error);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (cpu, wall) = (common::cpu_time() - cpu, wall.elapsed());
    relay.stop().await;
    let (status, attempts, error) = status;
    assert_eq!(
        (status.as_str(), attempts),
        ("dead", 4),
        "backed off, then dead-lettered after its attempts"
    );
    assert!(
        error
            .unwrap_or_default()
            .to_lowercase()
            .contains("unknown topic"),
        "the broker's reason is recorded"
    );
    println!("r08: {cpu:?} CPU over {wall:?} of waiting");
    assert!(
        cpu < wall / 4,
        "the relay waited without spinning: {cpu:?} CPU in {wall:?}"
    );
}
