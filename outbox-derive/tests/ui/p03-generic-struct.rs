//! A generic struct: the user's bounds and where clauses are kept on the impls.

use std::fmt::Debug;

use outbox_core::{OutboxEvent, StaticOutboxEvent};
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "envelopes", aggregate = "envelope")]
struct Envelope<T: Serialize> {
    #[outbox(key)]
    id: u64,
    payload: T,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "tagged")]
struct Tagged<'a, K, V>
where
    K: Serialize + Debug,
    V: Serialize,
{
    #[outbox(key)]
    tag: &'a str,
    key: K,
    value: V,
}

fn topic_of<E: OutboxEvent>(event: &E) -> &str {
    event.topic()
}

fn main() {
    let envelope = Envelope { id: 3, payload: vec![1, 2, 3] };
    assert_eq!(envelope.key(), "3");
    assert_eq!(topic_of(&envelope), "envelopes");
    assert_eq!(envelope.payload.len(), 3);
    assert_eq!(<Envelope<String> as StaticOutboxEvent>::EVENT_TYPE, "Envelope");

    let tagged = Tagged { tag: "t-1", key: 5u8, value: "v" };
    assert_eq!(tagged.key(), "t-1");
    assert_eq!(tagged.aggregate_type(), "tagged");
    assert_eq!((tagged.key, tagged.value), (5, "v"));
}
