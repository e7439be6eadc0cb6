use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
    #[outbox(key)]
    customer_id: u64,
}

fn main() {}
