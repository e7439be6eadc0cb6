//! The broker side: where claimed events are published.

use async_trait::async_trait;

use crate::error::PublishError;
use crate::message::ClaimedEvent;

/// Publishes events to a broker.
///
/// `publish` gets a batch ordered by outbox position and returns one result per event, in the same order.
/// An event is `Ok` only once the broker acknowledged it. A transport should hand the whole batch to its
/// client before awaiting acknowledgements, and must keep the order of events of one key; when an event
/// fails before it left the client, later events of its key in the batch should come back as
/// [`PublishError::NotSent`] rather than overtake it.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Publishes `batch`; one result per event, in order.
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>>;
}
