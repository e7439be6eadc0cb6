use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", topic = "orders.v2")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders")]
#[outbox(aggregate = "order", topic = "orders.v2")]
struct OrderShipped {
    #[outbox(key)]
    order_id: u64,
}

fn main() {}
