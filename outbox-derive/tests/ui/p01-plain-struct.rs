//! Structs with each kind of key field: `EVENT_TYPE` defaults to the struct's name.

use outbox_core::{OutboxEvent, StaticOutboxEvent};
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", aggregate = "order")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: Uuid,
    total_cents: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "customers", aggregate = "customer")]
struct CustomerRenamed {
    name: String,
    #[outbox(key)]
    customer_id: String,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "batches", aggregate = "batch")]
struct BatchCreated {
    #[outbox(key)]
    batch_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "sessions", aggregate = "session")]
struct SessionOpened<'a> {
    #[outbox(key)]
    session: &'a str,
    user: &'a str,
}

fn main() {
    let order_id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
    let placed = OrderPlaced { order_id, total_cents: 1250 };
    assert_eq!(placed.key(), "01920000-0000-7000-8000-000000000001");
    assert_eq!(placed.topic(), "orders");
    assert_eq!(placed.aggregate_type(), "order");
    assert_eq!(placed.event_type(), "OrderPlaced");
    assert_eq!(placed.version(), None);
    assert_eq!(<OrderPlaced as StaticOutboxEvent>::EVENT_TYPE, "OrderPlaced");
    assert_eq!(<OrderPlaced as StaticOutboxEvent>::TOPIC, "orders");
    assert_eq!(<OrderPlaced as StaticOutboxEvent>::AGGREGATE_TYPE, "order");
    assert_eq!(<OrderPlaced as StaticOutboxEvent>::VERSION, None);

    let renamed = CustomerRenamed { name: "Ada".into(), customer_id: "c-17".into() };
    assert_eq!(renamed.key(), "c-17");
    assert_eq!(renamed.event_type(), "CustomerRenamed");

    let created = BatchCreated { batch_id: 42 };
    assert_eq!(created.key(), "42");
    assert_eq!(created.aggregate_type(), "batch");

    let opened = SessionOpened { session: "s-1", user: "ada" };
    assert_eq!(opened.key(), "s-1");
    assert_eq!(opened.topic(), "sessions");
    assert_eq!(<SessionOpened<'static> as StaticOutboxEvent>::EVENT_TYPE, "SessionOpened");
}
