//! A tuple struct whose field 0 is the key.

use outbox_core::{OutboxEvent, StaticOutboxEvent};
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "payments")]
struct PaymentCaptured(#[outbox(key)] u64, u32);

fn main() {
    let captured = PaymentCaptured(9001, 250);
    assert_eq!(captured.key(), "9001");
    assert_eq!(captured.topic(), "payments");
    // The aggregate type defaults to the topic.
    assert_eq!(captured.aggregate_type(), "payments");
    assert_eq!(PaymentCaptured::EVENT_TYPE, "PaymentCaptured");
    assert_eq!(captured.1, 250);
}
