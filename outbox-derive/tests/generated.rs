//! Run-time behaviour of the derived impls: every method and constant returns what the attributes say, for
//! every shape the derive accepts.

use std::borrow::Cow;

use outbox_core::{EventKey, OutboxEvent, StaticOutboxEvent};
use serde::Serialize;
use uuid::Uuid;

const ORDER_ID: Uuid = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
const ORDER_ID_TEXT: &str = "01920000-0000-7000-8000-000000000001";

/// The five methods as one comparable value.
fn metadata(event: &impl OutboxEvent) -> (String, String, String, String, Option<u32>) {
    (
        event.event_type().to_owned(),
        event.topic().to_owned(),
        event.aggregate_type().to_owned(),
        event.key().into_owned(),
        event.version(),
    )
}

fn expected(
    event_type: &str,
    topic: &str,
    aggregate: &str,
    key: &str,
    version: Option<u32>,
) -> (String, String, String, String, Option<u32>) {
    (
        event_type.into(),
        topic.into(),
        aggregate.into(),
        key.into(),
        version,
    )
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", aggregate = "order")]
struct OrderPlaced {
    #[outbox(key)]
    order_id: Uuid,
    total_cents: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "customers")]
struct CustomerRenamed {
    name: String,
    #[outbox(key)]
    customer_id: String,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "batches", aggregate = "batch")]
struct BatchCreated {
    #[outbox(key)]
    batch_id: u64,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "sessions")]
struct SessionOpened<'a> {
    #[outbox(key)]
    session: &'a str,
}

#[test]
fn structs_with_each_kind_of_key() {
    let placed = OrderPlaced {
        order_id: ORDER_ID,
        total_cents: 990,
    };
    assert_eq!(
        metadata(&placed),
        expected("OrderPlaced", "orders", "order", ORDER_ID_TEXT, None)
    );
    assert_eq!(placed.total_cents, 990);

    // The aggregate type defaults to the topic.
    let renamed = CustomerRenamed {
        name: "Ada".into(),
        customer_id: "c-17".into(),
    };
    assert_eq!(
        metadata(&renamed),
        expected("CustomerRenamed", "customers", "customers", "c-17", None)
    );
    assert_eq!(renamed.name, "Ada");
    // A `String` key is borrowed, not copied.
    assert!(matches!(renamed.key(), Cow::Borrowed("c-17")));

    let created = BatchCreated { batch_id: 42 };
    assert_eq!(
        metadata(&created),
        expected("BatchCreated", "batches", "batch", "42", None)
    );

    let owner = String::from("s-9");
    let opened = SessionOpened { session: &owner };
    assert_eq!(
        metadata(&opened),
        expected("SessionOpened", "sessions", "sessions", "s-9", None)
    );
}

#[test]
fn struct_constants_match_the_methods() {
    assert_eq!(OrderPlaced::EVENT_TYPE, "OrderPlaced");
    assert_eq!(OrderPlaced::TOPIC, "orders");
    assert_eq!(OrderPlaced::AGGREGATE_TYPE, "order");
    assert_eq!(OrderPlaced::VERSION, None);
    assert_eq!(
        <SessionOpened<'static> as StaticOutboxEvent>::TOPIC,
        "sessions"
    );
    assert_eq!(
        SpellcheckInitiated::EVENT_TYPE,
        "batch.spellcheck.initiated.v1"
    );
    assert_eq!(SpellcheckInitiated::VERSION, Some(2));
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "payments", aggregate = "payment")]
struct PaymentCaptured(#[outbox(key)] u64, u32);

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "refunds")]
struct RefundIssued(u32, #[outbox(key)] String);

#[test]
fn tuple_structs() {
    let captured = PaymentCaptured(9001, 250);
    assert_eq!(
        metadata(&captured),
        expected("PaymentCaptured", "payments", "payment", "9001", None)
    );
    assert_eq!(captured.1, 250);

    let refund = RefundIssued(3, "r-1".into());
    assert_eq!(refund.key(), "r-1");
    assert_eq!(refund.0, 3);
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "envelopes", aggregate = "envelope", version = 1)]
struct Envelope<T: Serialize> {
    #[outbox(key)]
    id: u64,
    payload: T,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "keyed")]
struct KeyedBy<K>
where
    K: Serialize + EventKey,
{
    #[outbox(key)]
    key: K,
}

#[test]
fn generic_structs() {
    let envelope = Envelope {
        id: 3,
        payload: vec!["a", "b"],
    };
    assert_eq!(
        metadata(&envelope),
        expected("Envelope", "envelopes", "envelope", "3", Some(1))
    );
    assert_eq!(envelope.payload.len(), 2);
    assert_eq!(<Envelope<()> as StaticOutboxEvent>::VERSION, Some(1));

    // The key field's type is a type parameter.
    assert_eq!(KeyedBy { key: ORDER_ID }.key(), ORDER_ID_TEXT);
    assert_eq!(KeyedBy { key: -4i64 }.key(), "-4");
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", aggregate = "order", version = 1)]
enum OrderEvent {
    #[outbox(event_type = "order.placed.v1")]
    Placed {
        #[outbox(key)]
        order_id: Uuid,
        total_cents: u64,
    },
    #[outbox(event_type = "order.cancelled.v2", version = 2)]
    Cancelled(String, #[outbox(key)] u64),
    #[outbox(topic = "orders.audit")]
    Audited {
        #[outbox(key)]
        order_id: Uuid,
    },
}

#[derive(Serialize, OutboxEvent)]
enum PerVariantTopic<'a> {
    #[outbox(topic = "left", aggregate = "side")]
    Left(#[outbox(key)] &'a str),
    #[outbox(topic = "right")]
    Right {
        #[outbox(key)]
        id: u8,
    },
}

#[test]
fn enum_variants_are_events_of_their_own() {
    let placed = OrderEvent::Placed {
        order_id: ORDER_ID,
        total_cents: 5,
    };
    assert_eq!(
        metadata(&placed),
        expected("order.placed.v1", "orders", "order", ORDER_ID_TEXT, Some(1))
    );

    let cancelled = OrderEvent::Cancelled("fraud".into(), 77);
    assert_eq!(
        metadata(&cancelled),
        expected("order.cancelled.v2", "orders", "order", "77", Some(2))
    );

    // A variant's own topic overrides the shared one; the other options still come from the enum.
    let audited = OrderEvent::Audited { order_id: ORDER_ID };
    assert_eq!(
        metadata(&audited),
        expected("Audited", "orders.audit", "order", ORDER_ID_TEXT, Some(1))
    );

    if let OrderEvent::Placed { total_cents, .. } | OrderEvent::Cancelled(_, total_cents) = &placed
    {
        assert_eq!(*total_cents, 5);
    }
    if let OrderEvent::Cancelled(reason, _) = &cancelled {
        assert_eq!(reason, "fraud");
    }
}

#[test]
fn enum_without_a_shared_topic() {
    // Without a shared aggregate, each variant's aggregate defaults to its own topic.
    assert_eq!(
        metadata(&PerVariantTopic::Left("l")),
        expected("Left", "left", "side", "l", None)
    );
    assert_eq!(
        metadata(&PerVariantTopic::Right { id: 1 }),
        expected("Right", "right", "right", "1", None)
    );
}

#[derive(Serialize, OutboxEvent)]
#[outbox(
    topic = "batch.events",
    aggregate = "batch",
    event_type = "batch.spellcheck.initiated.v1",
    version = 2
)]
struct SpellcheckInitiated {
    #[outbox(key)]
    batch_id: u64,
}

#[test]
fn explicit_event_type_and_version() {
    let event = SpellcheckInitiated { batch_id: 8 };
    assert_eq!(
        metadata(&event),
        expected(
            "batch.spellcheck.initiated.v1",
            "batch.events",
            "batch",
            "8",
            Some(2)
        )
    );
}

/// A crate that re-exports `outbox_core` under its own path, as a facade crate would.
mod facade {
    pub mod outbox {
        pub use outbox_core::*;
    }
}

#[derive(Serialize, facade::outbox::OutboxEvent)]
#[outbox(crate = "crate::facade::outbox", topic = "facade.events")]
struct ThroughFacade {
    #[outbox(key)]
    id: u32,
}

#[test]
fn crate_path_is_used_for_generated_paths() {
    let event = ThroughFacade { id: 12 };
    assert_eq!(
        metadata(&event),
        expected(
            "ThroughFacade",
            "facade.events",
            "facade.events",
            "12",
            None
        )
    );
    assert_eq!(
        <ThroughFacade as facade::outbox::StaticOutboxEvent>::TOPIC,
        "facade.events"
    );
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "raw.names")]
#[allow(non_camel_case_types)]
struct r#type {
    #[outbox(key)]
    r#ref: u8,
}

#[test]
fn raw_identifiers_are_named_without_their_prefix() {
    assert_eq!(r#type::EVENT_TYPE, "type");
    assert_eq!(r#type { r#ref: 1 }.key(), "1");
}
