use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders")]
struct OrderPlaced {
    order_id: u64,
    total_cents: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders")]
enum OrderEvent {
    Placed {
        #[outbox(key)]
        order_id: u64,
    },
    Cancelled {
        order_id: u64,
    },
    Expired,
}

fn main() {}
