use outbox_core::OutboxEvent;
use serde::Serialize;

#[derive(Serialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

// `Serialize` is forgotten here.
#[derive(OutboxEvent)]
#[outbox(topic = "orders")]
pub struct OrderPlaced {
    #[outbox(key)]
    pub order_id: u64,
    pub lines: Vec<Line>,
}

fn main() {}
