use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(aggregate = "order")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
}

// An enum needs a shared topic, or one on every variant.
#[derive(Serialize, OutboxEvent)]
enum CustomerEvent {
    #[outbox(topic = "customers")]
    Registered {
        #[outbox(key)]
        customer_id: u64,
    },
    Deleted {
        #[outbox(key)]
        customer_id: u64,
    },
}

fn main() {}
