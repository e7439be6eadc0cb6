//! An enum: each variant is its own event, with its own event type and key; the topic is shared unless a
//! variant sets its own.

use outbox_core::OutboxEvent;
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", aggregate = "order", version = 1)]
enum OrderEvent {
    #[outbox(event_type = "order.placed.v1")]
    Placed {
        #[outbox(key)]
        order_id: Uuid,
        total_cents: u64,
    },
    #[outbox(event_type = "order.cancelled.v1", version = 2)]
    Cancelled(u32, #[outbox(key)] Uuid),
    #[outbox(topic = "orders.audit", aggregate = "audit")]
    Audited {
        #[outbox(key)]
        order_id: Uuid,
    },
}

fn main() {
    let id = Uuid::from_u128(7);
    let placed = OrderEvent::Placed { order_id: id, total_cents: 10 };
    let cancelled = OrderEvent::Cancelled(3, Uuid::from_u128(8));
    let audited = OrderEvent::Audited { order_id: id };

    assert_eq!(placed.event_type(), "order.placed.v1");
    assert_eq!(cancelled.event_type(), "order.cancelled.v1");
    assert_eq!(audited.event_type(), "Audited");

    assert_eq!(placed.key(), "00000000-0000-0000-0000-000000000007");
    assert_eq!(cancelled.key(), "00000000-0000-0000-0000-000000000008");
    assert_eq!(audited.key(), "00000000-0000-0000-0000-000000000007");

    assert_eq!(placed.topic(), "orders");
    assert_eq!(cancelled.topic(), "orders");
    assert_eq!(audited.topic(), "orders.audit");

    assert_eq!(placed.aggregate_type(), "order");
    assert_eq!(audited.aggregate_type(), "audit");

    assert_eq!(placed.version(), Some(1));
    assert_eq!(cancelled.version(), Some(2));
    assert_eq!(audited.version(), Some(1));
}
