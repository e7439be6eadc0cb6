//! Errors of the core crate.

/// Why an event could not be turned into an outbox message. Nothing is written when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload failed to serialize to JSON.
    #[error("event payload could not be serialized to JSON")]
    Payload(#[source] serde_json::Error),
    /// The payload or a text field holds a NUL character, which PostgreSQL cannot store (`jsonb` refuses
    /// `\u0000`, `text` refuses NUL bytes): rejected here so that the caller's transaction is not aborted.
    #[error(
        "the event's {field} contains a NUL character (\\u0000), which PostgreSQL cannot store"
    )]
    NulCharacter {
        /// Which part: `payload`, `key`, `event type`, `aggregate type` or `header`.
        field: &'static str,
    },
    /// A header name the transport sets from the event itself (`event-id`, `event-type`, ...).
    #[error("header {name:?} is set from the event itself and cannot be given")]
    ReservedHeader {
        /// The name as given.
        name: String,
    },
    /// The event names a topic Kafka would refuse.
    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// The rule it breaks.
        reason: &'static str,
    },
}

/// An error from a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The outbox table does not exist or lacks columns: the migration has not been run.
    #[error("the outbox schema is missing or out of date: {hint}")]
    MissingMigration {
        /// What to run.
        hint: String,
    },
    /// The database failed; usually transient (connection lost, timeout).
    #[error("outbox store error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

/// Why one event was not published. The relay decides from the kind whether the event is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The broker could not be reached or did not answer in time: not the event's fault. When a whole batch
    /// fails this way the relay treats it as an outage, backs off, and does not count the attempt.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker or the client refused this event (too large, unknown topic, not authorized, ...). Counted
    /// as an attempt; retried with backoff, then dead-lettered.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Not sent because an earlier event of the same key in the batch failed; sent again later, in order.
    #[error("not sent: an earlier event of the same key failed")]
    NotSent,
}

/// An error that stops [`Relay::run`](crate::Relay::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The store failed in a way retrying cannot fix (e.g. a missing migration).
    #[error("relay stopped: the store failed permanently")]
    Store(#[from] StoreError),
}

/// An error from a [`MessageSource`](crate::inbox::MessageSource).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The broker could not be reached or refused the request; usually transient. The consumer backs off
    /// and tries again.
    #[error("message source error")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An error that stops [`InboxConsumer::run`](crate::inbox::InboxConsumer::run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The inbox store failed in a way retrying cannot fix (e.g. a missing migration).
    #[error("inbox consumer stopped: the store failed permanently")]
    Store(#[source] StoreError),
}
