use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = 5)]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

fn main() {}
