//! A relay that starts while the broker is unreachable keeps retrying with backoff and delivers once it is up.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outbox_core::OutboxEvent;
use outbox_examples::{check_delivery, ensure_topics, ExpectedEvent, TopicReader};
use outbox_kafka::{KafkaTransport, KafkaTransportConfig};
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "outage.events", aggregate = "device")]
struct Reading {
    #[outbox(key)]
    device: u32,
    value: u64,
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_tansu(port: u16) -> Broker {
    let bin = std::env::var("TANSU_BIN").expect(
        "TANSU_BIN is not set: run scripts/test.sh, or eval \"$(scripts/services.sh tools)\"",
    );
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    Broker(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_started_while_the_broker_is_down_delivers_once_it_is_up() {
    common::init_tracing();
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "broker_outage").await;
    let outbox = common::outbox(&config);
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");

    let mut expected = Vec::new();
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..30u64 {
        let event = Reading {
            device: (i % 4) as u32,
            value: i,
        };
        let id = outbox.enqueue(&mut tx, &event).await.expect("enqueue");
        expected.push(ExpectedEvent::of(id, &event));
    }
    tx.commit().await.expect("commit");

    // Nothing listens on the port yet.
    let transport = KafkaTransport::new(
        KafkaTransportConfig::new(&brokers).delivery_timeout(Duration::from_secs(2)),
    )
    .expect("transport");
    let mut relay_config = common::relay_config();
    relay_config.outage_backoff.initial = Duration::from_millis(300);
    relay_config.outage_backoff.max = Duration::from_secs(2);
    let relay = common::spawn_relay(&pool, &config, transport, relay_config);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let pending: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {} WHERE status = 'pending'",
        config.table.quoted()
    ))
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        pending, 30,
        "nothing may be lost or dead-lettered while the broker is down"
    );
    let attempts: i32 = sqlx::query_scalar(&format!(
        "SELECT max(retry_count) FROM {}",
        config.table.quoted()
    ))
    .fetch_one(&pool)
    .await
    .expect("attempts");
    assert!(
        attempts <= 1,
        "an outage must not use up the events' attempts (max retry_count {attempts})"
    );

    let _broker = start_tansu(port);
    ensure_topics(&brokers, &[("outage.events", 2)])
        .await
        .expect("topics");
    let reader = TopicReader::new(&brokers, &["outage.events"]).expect("reader");
    let wanted: HashSet<Uuid> = expected.iter().map(|e| e.id).collect();
    let received = reader
        .read_until(
            |got| wanted.is_subset(&got.iter().filter_map(|m| m.event_id()).collect()),
            Duration::from_secs(40),
        )
        .await
        .expect("read back");
    let stats = relay.stop().await;

    let report = check_delivery(&expected, &HashSet::new(), &received);
    assert_eq!(report.missing, 0, "{report:#?}");
    assert_eq!(report.out_of_order, 0, "{report:#?}");
    assert!(report.mismatches.is_empty(), "{report:#?}");
    assert!(
        stats.outages >= 1,
        "the relay saw the outage and backed off: {stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0);
}
