//! The event contract: what a type must tell the outbox about itself.

use std::borrow::Cow;
use std::sync::Arc;

/// A domain event that can be written to the outbox.
///
/// Implement it with `#[derive(OutboxEvent)]` (see the crate docs for every attribute); the derive checks the
/// metadata at compile time. The payload is the event's `serde` serialization, stored as JSON.
///
/// ```
/// use outbox_core::OutboxEvent;
/// use serde::Serialize;
///
/// #[derive(Serialize, OutboxEvent)]
/// #[outbox(topic = "batch.events", aggregate = "batch", event_type = "batch.created.v1")]
/// struct BatchCreated {
///     #[outbox(key)]
///     batch_id: u64,
///     essays: u32,
/// }
///
/// let event = BatchCreated { batch_id: 7, essays: 3 };
/// assert_eq!(event.topic(), "batch.events");
/// assert_eq!(event.key(), "7");
/// assert_eq!(event.event_type(), "batch.created.v1");
/// ```
pub trait OutboxEvent: serde::Serialize {
    /// The event's type name, e.g. `batch.spellcheck.initiated.v1`; sent as the `event-type` header.
    fn event_type(&self) -> &str;
    /// The Kafka topic the event is published to.
    fn topic(&self) -> &str;
    /// The type of aggregate the event belongs to, e.g. `batch`; sent as the `aggregate-type` header.
    fn aggregate_type(&self) -> &str;
    /// The event's key: the Kafka message key, the aggregate id, and the unit of ordering.
    fn key(&self) -> Cow<'_, str>;
    /// The schema version of the payload, if the type declares one; sent as the `event-version` header.
    fn version(&self) -> Option<u32>;
}

/// Compile-time metadata of an event type whose values all share one event type, topic and aggregate
/// (every derived struct). Enums whose variants differ implement only [`OutboxEvent`].
///
/// ```
/// use outbox_core::{OutboxEvent, StaticOutboxEvent};
/// # use serde::Serialize;
/// #[derive(Serialize, OutboxEvent)]
/// #[outbox(topic = "batch.events")]
/// struct BatchCreated { #[outbox(key)] batch_id: u64 }
///
/// assert_eq!(<BatchCreated as StaticOutboxEvent>::EVENT_TYPE, "BatchCreated");
/// ```
pub trait StaticOutboxEvent: OutboxEvent {
    /// The event type (defaults to the type's name).
    const EVENT_TYPE: &'static str;
    /// The Kafka topic.
    const TOPIC: &'static str;
    /// The aggregate type (defaults to the topic).
    const AGGREGATE_TYPE: &'static str;
    /// The payload schema version, if declared.
    const VERSION: Option<u32>;
}

/// A value that can be an event key (see `#[outbox(key)]`).
///
/// Implemented for `Uuid` (hyphenated lowercase), `String`, `str`, `Cow<str>`, `Box<str>`, `Arc<str>`, every
/// integer type, and references to any of these. Implement it for your own identifier types:
///
/// ```
/// use std::borrow::Cow;
/// use outbox_core::EventKey;
///
/// struct TenantScoped { tenant: u32, id: u64 }
///
/// impl EventKey for TenantScoped {
///     fn event_key(&self) -> Cow<'_, str> {
///         Cow::Owned(format!("{}/{}", self.tenant, self.id))
///     }
/// }
/// assert_eq!(TenantScoped { tenant: 1, id: 2 }.event_key(), "1/2");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an outbox event key",
    label = "the type of this `#[outbox(key)]` field does not implement `outbox_core::EventKey`",
    note = "implement `outbox_core::EventKey` for `{Self}`, or mark a field of type Uuid, String, &str or an integer as the key"
)]
pub trait EventKey {
    /// The key as text.
    fn event_key(&self) -> Cow<'_, str>;
}

impl EventKey for str {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl EventKey for String {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl EventKey for Cow<'_, str> {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_ref())
    }
}

impl EventKey for Box<str> {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl EventKey for Arc<str> {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl EventKey for uuid::Uuid {
    fn event_key(&self) -> Cow<'_, str> {
        Cow::Owned(self.hyphenated().to_string())
    }
}

impl<T: EventKey + ?Sized> EventKey for &T {
    fn event_key(&self) -> Cow<'_, str> {
        (**self).event_key()
    }
}

macro_rules! integer_keys {
    ($($t:ty)*) => {$(
        impl EventKey for $t {
            fn event_key(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
integer_keys!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_convert_to_their_documented_text() {
        let id = uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
        assert_eq!(id.event_key(), "01920000-0000-7000-8000-000000000001");
        assert_eq!(42u64.event_key(), "42");
        assert_eq!((-3i32).event_key(), "-3");
        assert_eq!("k".event_key(), "k");
        assert_eq!(String::from("s").event_key(), "s");
        assert_eq!(Cow::Borrowed("c").event_key(), "c");
        let arc: Arc<str> = Arc::from("a");
        assert_eq!(arc.event_key(), "a");
        assert_eq!((&&7u8).event_key(), "7");
    }
}
