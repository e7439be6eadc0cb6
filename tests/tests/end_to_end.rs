//! Derive → enqueue in the caller's transaction → relay → Kafka, on real PostgreSQL and a real broker.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use outbox_core::OutboxEvent;
use outbox_examples::{check_delivery, ensure_topics, ExpectedEvent, TopicReader};
use outbox_postgres::EnqueueExt;
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize, OutboxEvent)]
#[outbox(
    topic = "e2e.orders",
    aggregate = "order",
    event_type = "order.placed.v1",
    version = 2
)]
struct OrderPlaced {
    #[outbox(key)]
    order_id: Uuid,
    amount_cents: u64,
    lines: Vec<String>,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "e2e.orders", aggregate = "order")]
enum OrderSettled {
    #[outbox(event_type = "order.paid.v1")]
    Paid {
        #[outbox(key)]
        order_id: Uuid,
        step: u32,
    },
    #[outbox(event_type = "order.refunded.v1", topic = "e2e.refunds")]
    Refunded {
        #[outbox(key)]
        order_id: Uuid,
        step: u32,
    },
}

/// Committed and rolled-back transactions on the default table through `tx.enqueue`, one relay, one consumer:
/// exactly the committed events arrive, once each, in commit order per key, with key, headers and payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_arrive_once_in_order_and_rolled_back_ones_never() {
    common::init_tracing();
    let pool = common::pool().await;
    let brokers = common::kafka_brokers();
    outbox_postgres::migrate(&pool).await.expect("migrate");
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS e2e_orders (id uuid PRIMARY KEY, state text NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("business table");
    ensure_topics(&brokers, &[("e2e.orders", 3), ("e2e.refunds", 2)])
        .await
        .expect("topics");

    let relay = common::spawn_relay(
        &pool,
        &outbox_postgres::PgOutboxConfig::default(),
        common::kafka(&brokers),
        common::relay_config(),
    );

    let orders: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
    let mut expected = Vec::new();
    let mut rolled_back = HashSet::new();
    for (round, order) in orders.iter().enumerate() {
        // Commit: the business row and the event in one transaction.
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO e2e_orders (id, state) VALUES ($1, 'placed')")
            .bind(order)
            .execute(&mut *tx)
            .await
            .expect("insert order");
        let placed = OrderPlaced {
            order_id: *order,
            amount_cents: 1000 + round as u64,
            lines: vec![format!("sku-{round}")],
        };
        let id = tx.enqueue(&placed).await.expect("enqueue");
        tx.commit().await.expect("commit");
        expected.push(ExpectedEvent::of(id, &placed));

        // Roll back: the event must never arrive.
        let mut tx = pool.begin().await.expect("begin");
        let doomed = OrderSettled::Paid {
            order_id: *order,
            step: 99,
        };
        rolled_back.insert(tx.enqueue(&doomed).await.expect("enqueue"));
        tx.rollback().await.expect("rollback");

        // Commit two more events of the key in one transaction, through a plain connection-level call too.
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("UPDATE e2e_orders SET state = 'settled' WHERE id = $1")
            .bind(order)
            .execute(&mut *tx)
            .await
            .expect("update order");
        let settled = vec![
            OrderSettled::Paid {
                order_id: *order,
                step: 1,
            },
            if round % 3 == 0 {
                OrderSettled::Refunded {
                    order_id: *order,
                    step: 2,
                }
            } else {
                OrderSettled::Paid {
                    order_id: *order,
                    step: 2,
                }
            },
        ];
        let ids = tx.enqueue_all(&settled).await.expect("enqueue_all");
        tx.commit().await.expect("commit");
        for (id, event) in ids.into_iter().zip(&settled) {
            expected.push(ExpectedEvent::of(id, event));
        }
    }
    // An event enqueued on a connection outside any explicit transaction commits on its own.
    let mut conn = pool.acquire().await.expect("connection");
    let solo = OrderPlaced {
        order_id: orders[0],
        amount_cents: 1,
        lines: vec![],
    };
    let id = conn.enqueue(&solo).await.expect("enqueue on a connection");
    expected.push(ExpectedEvent::of(id, &solo));

    let reader = TopicReader::new(&brokers, &["e2e.orders", "e2e.refunds"]).expect("reader");
    let wanted: HashSet<Uuid> = expected.iter().map(|e| e.id).collect();
    let received = reader
        .read_until(
            |got| {
                let ids: HashSet<Uuid> = got.iter().filter_map(|m| m.event_id()).collect();
                wanted.is_subset(&ids)
            },
            Duration::from_secs(20),
        )
        .await
        .expect("read back");
    // Anything extra (a duplicate or a rolled-back event) would arrive right behind.
    let mut received = received;
    while let Some(m) = reader.next(Duration::from_millis(700)).await.expect("read") {
        received.push(m);
    }
    let stats = relay.stop().await;

    let report = check_delivery(&expected, &rolled_back, &received);
    assert!(report.is_perfect(), "{report:#?}");
    assert_eq!(report.delivered, expected.len());
    assert!(stats.published >= expected.len() as u64, "{stats:?}");

    // The enum's variants carried their own event types, and the overriding variant its own topic.
    let refund = received
        .iter()
        .find(|m| m.topic == "e2e.refunds" && m.event_id().is_some_and(|id| wanted.contains(&id)))
        .expect("a refund arrived on its own topic");
    assert_eq!(refund.header("event-type"), Some("order.refunded.v1"));
    let paid = received
        .iter()
        .find(|m| {
            m.header("event-type") == Some("order.paid.v1")
                && m.event_id().is_some_and(|id| wanted.contains(&id))
        })
        .expect("a payment arrived");
    assert_eq!(paid.topic, "e2e.orders");
    assert_eq!(paid.header("aggregate-type"), Some("order"));
    let placed = received
        .iter()
        .find(|m| m.header("event-type") == Some("order.placed.v1"))
        .expect("an order arrived");
    assert_eq!(placed.header("event-version"), Some("2"));
}
