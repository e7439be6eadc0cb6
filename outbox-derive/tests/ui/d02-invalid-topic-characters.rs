use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders events")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders/events")]
struct OrderShipped {
    #[outbox(key)]
    order_id: u64,
}

fn main() {}
