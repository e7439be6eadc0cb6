use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "")]
struct Empty {
    #[outbox(key)]
    id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = ".")]
struct Dot {
    #[outbox(key)]
    id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "..")]
struct DotDot {
    #[outbox(key)]
    id: u64,
}

fn main() {}
