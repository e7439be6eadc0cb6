//! # outbox-core
//!
//! The contract of the transactional outbox: the [`OutboxEvent`] trait (with `#[derive(OutboxEvent)]`), the
//! records that travel from the outbox table to the broker, the [`Store`] and [`Transport`] traits a backend
//! implements, and the [`Relay`] that moves committed events from one to the other.
//!
//! ## Delivery semantics
//! At least once. An event is published if and only if the transaction that enqueued it commits; a relay that
//! dies between the broker's acknowledgement and marking the event sends it again, with the same event id.
//! Events of one key (per topic) are published in the order their transactions committed; an event that fails
//! holds back only the later events of its own key.
//!
//! The consumer side is the [`inbox`]: an idempotent consumer that records each event id in the same
//! transaction as the handler's writes, so a redelivered event is applied once. [`guide::backends`] explains
//! how to write a new store, transport, inbox store or message source.
#![warn(missing_docs)]

mod error;
mod event;
pub mod guide;
pub mod inbox;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
mod message;
mod relay;
mod retry;
mod store;
pub mod telemetry;
mod transport;

pub use error::{EncodeError, PublishError, RelayError, StoreError};
pub use event::{EventKey, OutboxEvent, StaticOutboxEvent};
pub use message::{validate_topic, ClaimedEvent, NewMessage, CORRELATION_ID};
pub use relay::{PassReport, Relay, RelayConfig, RelayStats};
pub use retry::RetryPolicy;
pub use store::{Completion, CompletionReport, DeadLetter, LeaseOwner, Retry, Store, TopicBacklog};
pub use transport::Transport;

/// Re-exported for [`Relay::run`]'s shutdown signal.
pub use tokio_util::sync::CancellationToken;

/// `#[derive(OutboxEvent)]`: see the crate-level docs of `outbox-derive` for every attribute.
#[cfg(feature = "derive")]
pub use outbox_derive::OutboxEvent;

/// Items the derive's generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use ::core::option::Option::{self, None, Some};
    pub use ::std::borrow::Cow;

    /// Implemented for every serializable type; the derive asserts it so that a type that is not `Serialize`
    /// gets one error that says so. `Serialize` is its supertrait so that the derive's `Self: AssertSerialize`
    /// bound also proves `OutboxEvent`'s supertrait without naming serde.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` must implement `serde::Serialize` to be an outbox event",
        label = "the event's payload is its serde serialization",
        note = "add `#[derive(serde::Serialize)]` to `{Self}`"
    )]
    pub trait AssertSerialize: serde::Serialize {}
    impl<T: ?Sized + serde::Serialize> AssertSerialize for T {}
}
