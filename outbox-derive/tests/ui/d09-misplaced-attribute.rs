use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", key)]
struct OrderPlaced {
    order_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders")]
struct OrderShipped {
    #[outbox(key)]
    order_id: u64,
    #[outbox(topic = "shipments")]
    carrier: String,
}

fn main() {}
