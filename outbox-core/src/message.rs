//! The records that travel from `enqueue` through the outbox table to the broker.

use std::time::Duration;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::EncodeError;
use crate::OutboxEvent;

/// An event serialized and ready to be written to the outbox table; made by [`NewMessage::from_event`].
///
/// Backends write it; users rarely see it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The event id (UUID v7): sent as the `event-id` header so consumers can drop duplicates.
    pub id: Uuid,
    /// The Kafka topic.
    pub topic: String,
    /// The message key, also the aggregate id and the unit of ordering.
    pub key: String,
    /// The event type.
    pub event_type: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The payload schema version.
    pub version: Option<u32>,
    /// The payload as JSON.
    pub payload: Box<RawValue>,
    /// Extra headers to send with the message (e.g. trace context).
    pub headers: Vec<(String, String)>,
}

impl NewMessage {
    /// Serializes `event` and gives it a fresh UUID v7 id.
    ///
    /// # Errors
    /// [`EncodeError::Payload`] when serde fails, [`EncodeError::InvalidTopic`] when the event names a topic
    /// Kafka would refuse (only possible with a hand-written `OutboxEvent` impl: the derive checks it).
    pub fn from_event<E: OutboxEvent + ?Sized>(event: &E) -> Result<Self, EncodeError> {
        let topic = event.topic();
        validate_topic(topic).map_err(|reason| EncodeError::InvalidTopic {
            topic: topic.to_owned(),
            reason,
        })?;
        let key = event.key();
        for (field, text) in [
            ("key", key.as_ref()),
            ("event type", event.event_type()),
            ("aggregate type", event.aggregate_type()),
        ] {
            if text.contains('\0') {
                return Err(EncodeError::NulCharacter { field });
            }
        }
        let payload = serde_json::value::to_raw_value(event).map_err(EncodeError::Payload)?;
        if has_escaped_nul(payload.get()) {
            return Err(EncodeError::NulCharacter { field: "payload" });
        }
        Ok(NewMessage {
            id: Uuid::now_v7(),
            topic: topic.to_owned(),
            key: key.into_owned(),
            event_type: event.event_type().to_owned(),
            aggregate_type: event.aggregate_type().to_owned(),
            version: event.version(),
            payload,
            #[cfg(feature = "opentelemetry")]
            headers: crate::telemetry::current_trace_headers(),
            #[cfg(not(feature = "opentelemetry"))]
            headers: Vec::new(),
        })
    }

    /// Adds a header to send with the message. Names the transport sets itself (`event-id`, `event-type`,
    /// `aggregate-type`, `aggregate-id`, `event-version`, `content-type`) are refused, as are NUL characters.
    ///
    /// ```
    /// # #[derive(serde::Serialize, outbox_core::OutboxEvent)]
    /// # #[outbox(topic = "orders")] struct OrderPlaced { #[outbox(key)] id: u64 }
    /// use outbox_core::NewMessage;
    /// let message = NewMessage::from_event(&OrderPlaced { id: 7 })?
    ///     .with_correlation_id("req-42")?
    ///     .with_header("tenant", "acme")?;
    /// assert!(message.headers.contains(&("correlation-id".into(), "req-42".into())));
    /// assert!(message.clone().with_header("event-id", "forged").is_err());
    /// let replaced = message.with_header("Tenant", "globex")?;
    /// assert_eq!(replaced.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("tenant")).count(), 1);
    /// # Ok::<(), outbox_core::EncodeError>(())
    /// ```
    ///
    /// # Errors
    /// [`EncodeError::ReservedHeader`] or [`EncodeError::NulCharacter`].
    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, EncodeError> {
        let (name, value) = (name.into(), value.into());
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(EncodeError::ReservedHeader { name });
        }
        if name.contains('\0') || value.contains('\0') {
            return Err(EncodeError::NulCharacter { field: "header" });
        }
        // Header names are compared without case, as Kafka clients and HTTP-minded consumers do.
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value));
        Ok(self)
    }

    /// Sets the `correlation-id` header, for consumers and logs that tie events of one request together.
    ///
    /// # Errors
    /// [`EncodeError::NulCharacter`] when the id holds a NUL character.
    pub fn with_correlation_id(self, id: impl Into<String>) -> Result<Self, EncodeError> {
        self.with_header(CORRELATION_ID, id)
    }
}

/// The header [`NewMessage::with_correlation_id`] sets.
pub const CORRELATION_ID: &str = "correlation-id";

/// Headers every transport sets from the event itself.
const RESERVED_HEADERS: [&str; 6] = [
    "event-id",
    "event-type",
    "aggregate-type",
    "aggregate-id",
    "event-version",
    "content-type",
];

/// An outbox row claimed by a relay: leased to it until published, retried, dead-lettered or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// The event id.
    pub id: Uuid,
    /// The position in the outbox: for one key, the order its transactions committed.
    pub seq: i64,
    /// The Kafka topic.
    pub topic: String,
    /// The message key (and aggregate id).
    pub key: String,
    /// The event type.
    pub event_type: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The payload schema version.
    pub version: Option<u32>,
    /// The payload as JSON text.
    pub payload: String,
    /// Extra headers stored with the event.
    pub headers: Vec<(String, String)>,
    /// Publish attempts made so far, counting the one this claim starts.
    pub attempts: u32,
    /// How long before the claim the event was enqueued, on the store's clock (for the commit→ack metric).
    pub age: Duration,
    /// The error of the previous attempt, if any.
    pub last_error: Option<String>,
}

/// Whether JSON text holds the escape `\u0000` (and not merely an escaped backslash followed by `u0000`).
fn has_escaped_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u')
                && bytes.get(i + 2..i + 6) == Some(b"0000".as_slice())
            {
                return true;
            }
            i += 2; // skip the escaped character, whatever it is
        } else {
            i += 1;
        }
    }
    false
}

/// Checks a topic name against Kafka's rules: 1–249 characters of ASCII letters, digits, `.`, `_` and `-`,
/// and not `.` or `..`.
///
/// # Errors
/// A sentence saying which rule the name breaks.
pub fn validate_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("a topic name cannot be empty");
    }
    if topic == "." || topic == ".." {
        return Err("a topic name cannot be `.` or `..`");
    }
    if topic.len() > 249 {
        return Err("a topic name is at most 249 characters long");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("a topic name may only contain ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_nul_escape_counts() {
        assert!(has_escaped_nul(r#"{"a":"x\u0000y"}"#));
        assert!(
            !has_escaped_nul(r#"{"a":"x\\u0000y"}"#),
            "an escaped backslash then u0000 is text"
        );
        assert!(has_escaped_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!has_escaped_nul(r#"{"a":"\u00e9"}"#));
    }

    #[test]
    fn topic_rules_follow_kafka() {
        assert!(validate_topic("batch.events").is_ok());
        assert!(validate_topic("a_b-C.9").is_ok());
        assert!(validate_topic(&"x".repeat(249)).is_ok());
        for bad in ["", ".", "..", "with space", "a/b", "é", &"x".repeat(250)] {
            assert!(validate_topic(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
