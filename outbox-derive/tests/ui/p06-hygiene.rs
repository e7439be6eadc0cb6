//! The generated code names everything by its full path and adds no names, so it compiles cleanly in a module
//! that shadows prelude names, under strict lints.
#![deny(warnings, unused_qualifications, unused_lifetimes, unused_results)]

mod events {
    use outbox_core::{EventKey, OutboxEvent, StaticOutboxEvent};
    use serde::Serialize;

    // Shadow the prelude names the generated code might use unqualified.
    pub struct Result;
    pub struct Option;
    pub struct String;
    pub struct Box;
    pub struct Cow;
    pub trait Sized {}
    pub type Self_ = ();

    #[derive(Serialize, OutboxEvent)]
    #[outbox(topic = "orders", version = 3)]
    pub struct OrderPlaced {
        #[outbox(key)]
        pub order_id: u64,
        pub note: std::string::String,
    }

    #[derive(Serialize, OutboxEvent)]
    #[outbox(topic = "orders")]
    pub enum OrderEvent<'a> {
        Placed {
            #[outbox(key)]
            order_id: &'a str,
        },
        #[outbox(event_type = "order.cancelled.v1")]
        Cancelled(#[outbox(key)] u64),
    }

    pub fn check() {
        let _ = (Result, Option, String, Box, Cow);
        let event = OrderPlaced { order_id: 5, note: "n".into() };
        assert_eq!(event.key(), 5u64.event_key());
        assert_eq!(event.version(), Some(3));
        assert_eq!(OrderPlaced::TOPIC, "orders");
        assert_eq!(event.note, "n");
        assert_eq!(OrderEvent::Placed { order_id: "a" }.key(), "a");
        assert_eq!(OrderEvent::Cancelled(9).event_type(), "order.cancelled.v1");
        assert_eq!(OrderEvent::Placed { order_id: "a" }.event_type(), "Placed");
    }
}

fn main() {
    events::check();
}
