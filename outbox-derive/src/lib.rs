//! `#[derive(OutboxEvent)]`: implements `outbox_core::OutboxEvent` for a struct or an enum, and for a struct also
//! `outbox_core::StaticOutboxEvent`. The topic, aggregate type, event type, version and key are declared with
//! `#[outbox(...)]` attributes and checked at compile time. Use the derive through `outbox_core`, which re-exports
//! it (feature `derive`, on by default); the payload is the type's `serde` serialization, so derive `Serialize` too.
//!
//! ```
//! use outbox_core::{OutboxEvent, StaticOutboxEvent};
//! use serde::Serialize;
//! use uuid::Uuid;
//!
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(topic = "orders", aggregate = "order")]
//! struct OrderPlaced {
//!     #[outbox(key)]
//!     order_id: Uuid,
//!     total_cents: u64,
//! }
//!
//! let event = OrderPlaced { order_id: Uuid::nil(), total_cents: 1250 };
//! assert_eq!(event.topic(), "orders");
//! assert_eq!(event.aggregate_type(), "order");
//! assert_eq!(event.event_type(), "OrderPlaced"); // the type's name, unless `event_type` is given
//! assert_eq!(event.key(), "00000000-0000-0000-0000-000000000000");
//! assert_eq!(event.version(), None);
//! assert_eq!(OrderPlaced::TOPIC, "orders");
//! ```
//!
//! # Attributes
//!
//! ## On the struct or enum
//!
//! | attribute | value | default |
//! |---|---|---|
//! | `topic = "..."` | the Kafka topic the event is published to | required (on an enum: on the enum or on every variant) |
//! | `aggregate = "..."` | the aggregate type, sent as the `aggregate-type` header | the topic |
//! | `event_type = "..."` | the event type, sent as the `event-type` header | the type's name (for an enum: the variant's name) |
//! | `version = N` | the payload's schema version (a `u32`), sent as the `event-version` header | none |
//! | `crate = "path"` | where `outbox_core` is, if not at `::outbox_core` | `::outbox_core` |
//!
//! ```
//! # use outbox_core::{OutboxEvent, StaticOutboxEvent};
//! # use serde::Serialize;
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(
//!     topic = "batch.events",
//!     aggregate = "batch",
//!     event_type = "batch.spellcheck.initiated.v1",
//!     version = 2
//! )]
//! struct SpellcheckInitiated {
//!     #[outbox(key)]
//!     batch_id: u64,
//! }
//!
//! let event = SpellcheckInitiated { batch_id: 7 };
//! assert_eq!(event.event_type(), "batch.spellcheck.initiated.v1");
//! assert_eq!(event.version(), Some(2));
//! assert_eq!(SpellcheckInitiated::AGGREGATE_TYPE, "batch");
//! ```
//!
//! `crate = "..."` is for crates that re-export `outbox_core` and derive through it, as serde's `crate`
//! attribute is; every path the derive generates then starts with the given path:
//!
//! ```
//! mod platform {
//!     // A facade crate's re-export.
//!     pub use outbox_core as outbox;
//! }
//!
//! # use serde::Serialize;
//! use platform::outbox::OutboxEvent;
//!
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(crate = "platform::outbox", topic = "audit")]
//! struct AuditLogged {
//!     #[outbox(key)]
//!     entry: u64,
//! }
//!
//! assert_eq!(AuditLogged { entry: 3 }.key(), "3");
//! ```
//!
//! ## On a field
//!
//! `#[outbox(key)]` marks the field that holds the event's key: the Kafka message key, the aggregate id and the
//! unit of ordering. Exactly one field of a struct (and of each enum variant) has it; named and tuple fields both
//! work. Its type must implement `outbox_core::EventKey`: `Uuid`, `String`, `&str`, `Cow<str>`, `Box<str>`,
//! `Arc<str>`, every integer type, references to these, and your own types that implement it.
//!
//! ```
//! # use outbox_core::OutboxEvent;
//! # use serde::Serialize;
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(topic = "payments")]
//! struct PaymentCaptured(#[outbox(key)] String, u64);
//!
//! assert_eq!(PaymentCaptured("p-1".into(), 990).key(), "p-1");
//! ```
//!
//! ## On an enum variant
//!
//! Each variant of an enum is an event of its own. A variant takes `topic`, `aggregate`, `event_type` and
//! `version`, which override the enum's; options it does not give come from the enum, and then from the defaults
//! (`event_type` is the variant's name, `aggregate` the variant's topic). Every variant needs a field marked
//! `#[outbox(key)]`. Enums implement `OutboxEvent` only: `StaticOutboxEvent` needs one value for the whole type.
//!
//! ```
//! # use outbox_core::OutboxEvent;
//! # use serde::Serialize;
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(topic = "orders", aggregate = "order")]
//! enum OrderEvent {
//!     #[outbox(event_type = "order.placed.v1")]
//!     Placed {
//!         #[outbox(key)]
//!         order_id: u64,
//!     },
//!     #[outbox(event_type = "order.cancelled.v1", version = 2)]
//!     Cancelled(#[outbox(key)] u64, String),
//!     #[outbox(topic = "orders.audit")]
//!     Audited {
//!         #[outbox(key)]
//!         order_id: u64,
//!     },
//! }
//!
//! let cancelled = OrderEvent::Cancelled(7, "fraud".into());
//! assert_eq!(cancelled.event_type(), "order.cancelled.v1");
//! assert_eq!((cancelled.topic(), cancelled.key().as_ref()), ("orders", "7"));
//! assert_eq!(cancelled.version(), Some(2));
//! let audited = OrderEvent::Audited { order_id: 8 };
//! assert_eq!((audited.event_type(), audited.topic()), ("Audited", "orders.audit"));
//! assert_eq!(audited.aggregate_type(), "order");
//! ```
//!
//! Generic types keep their parameters, bounds and `where` clauses (`impl<T: Serialize> OutboxEvent for
//! Envelope<T>`), and lifetimes work, e.g. a `&'a str` key. The type must be `Serialize` under the bounds it
//! declares itself, so write `struct Envelope<T: Serialize>` rather than relying on the bounds serde's derive
//! adds to its own impl.
//!
//! # Compile-time checks
//!
//! Every mistake in one type is reported in the same compile, each error on the token that is wrong:
//!
//! - the topic is missing (on the type's name; for an enum, on a variant that has none when others do);
//! - the topic is not a valid Kafka topic name: empty, `.`, `..`, longer than 249 characters, or with a
//!   character other than ASCII letters, digits, `.`, `_` and `-` (on the string);
//! - no field is `#[outbox(key)]` (on the struct or variant name), or a second one is (on the second `key`);
//! - the key field's type does not implement `outbox_core::EventKey` (on the field's type);
//! - the type does not implement `serde::Serialize` (on the type's name);
//! - an unknown option, with the closest known one ("did you mean `topic`?") or the list of known ones;
//! - an option given twice (on the second);
//! - an option in the wrong place, such as `key` on the struct or `topic` on a field;
//! - a value of the wrong kind: `topic = 5` (expected a string literal), `version = "2"` (expected an integer
//!   that fits a `u32`), `crate = "not a path"`, an empty `aggregate` or `event_type`;
//! - a union, or an enum without variants.
//!
//! When there are errors, the derive still emits a stub impl next to them, so that uses of the type as an event
//! do not add "trait not implemented" errors of their own.
#![warn(missing_docs)]

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `outbox_core::OutboxEvent` (and, for structs, `outbox_core::StaticOutboxEvent`); see the crate
/// docs for the attributes.
#[proc_macro_derive(OutboxEvent, attributes(outbox))]
pub fn derive_outbox_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
