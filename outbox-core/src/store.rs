//! The storage side: where committed events wait until they are published.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::StoreError;
use crate::message::ClaimedEvent;

/// Who holds a claim: a token unique to one relay instance. Marks from an owner whose lease was taken over
/// are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseOwner(pub Uuid);

impl LeaseOwner {
    /// A fresh random owner token.
    pub fn random() -> Self {
        LeaseOwner(Uuid::new_v4())
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A failed event to try again after `delay` (measured on the store's clock).
#[derive(Debug, Clone)]
pub struct Retry {
    /// The event.
    pub id: Uuid,
    /// How long to wait before the next attempt.
    pub delay: Duration,
    /// The error of the attempt that failed.
    pub error: String,
    /// Whether the attempt counts toward `max_attempts`. `false` when the broker was unavailable: the store
    /// then takes back the attempt it counted at the claim.
    pub counted: bool,
}

/// A failed event to set aside for an operator.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event.
    pub id: Uuid,
    /// The last error.
    pub error: String,
}

/// What became of a claimed batch, written back in one call.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// Acknowledged by the broker: done.
    pub published: Vec<Uuid>,
    /// Failed: try again later (the key stays blocked behind it).
    pub retries: Vec<Retry>,
    /// Failed for the last time.
    pub dead_letters: Vec<DeadLetter>,
    /// Not attempted (an earlier event of its key failed, the broker was down, or the relay is stopping):
    /// back to pending at once, without counting the attempt.
    pub released: Vec<Uuid>,
}

impl Completion {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
            && self.retries.is_empty()
            && self.dead_letters.is_empty()
            && self.released.is_empty()
    }
}

/// What the store did with a [`Completion`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionReport {
    /// Ids the store refused because this owner no longer held their lease (another relay took them over);
    /// that relay will publish them again.
    pub lease_lost: Vec<Uuid>,
}

/// What waits in a store for one topic, as [`Store::backlog`] reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicBacklog {
    /// The topic.
    pub topic: String,
    /// Events committed and not yet published.
    pub pending: u64,
    /// Dead-lettered events.
    pub dead: u64,
    /// How long ago the oldest pending event was enqueued (store clock); `None` when nothing is pending.
    pub oldest_pending_age: Option<Duration>,
}

/// Where events wait: claim, lease, complete.
///
/// A store must hand out events so that, for one `(topic, key)`, an event is claimable only when every earlier
/// event of that key is published or dead-lettered, or claimed in the same call; and it must measure every
/// time (lease expiry, retry delay) on its own clock.
///
/// The relay holds its store as `Arc<dyn Store>` (backends chosen at run time, one simple type for users), so
/// the trait uses `async_trait`; its calls are made once per batch, where the boxing costs nothing measurable.
#[async_trait]
pub trait Store: Send + Sync {
    /// Claims up to `limit` claimable events for `owner`, leased for `lease`, oldest first, and counts an
    /// attempt for each.
    async fn claim_batch(
        &self,
        owner: LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Extends the lease of events `owner` still holds; returns the ids it still holds.
    async fn extend_lease(
        &self,
        owner: LeaseOwner,
        ids: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Records what became of claimed events, refusing those whose lease `owner` lost.
    async fn complete(
        &self,
        owner: LeaseOwner,
        completion: &Completion,
    ) -> Result<CompletionReport, StoreError>;

    /// A channel that changes whenever new events may have been committed, if the store can tell. The relay
    /// then wakes at once instead of waiting for its poll interval; polling stays as the fallback.
    /// `metric_labels` are the relay's [`metric_labels`](crate::RelayConfig::metric_labels), for metrics the
    /// wake-up source records (such as `outbox_listen_reconnects_total`).
    async fn wakeups(&self, metric_labels: &[(String, String)]) -> Option<watch::Receiver<u64>> {
        let _ = metric_labels;
        None
    }

    /// What waits in the store, per topic, for the backlog gauges; `None` when the store cannot tell.
    async fn backlog(&self) -> Result<Option<Vec<TopicBacklog>>, StoreError> {
        Ok(None)
    }

    /// Deletes up to `limit` published events older than `older_than`; returns how many it deleted.
    async fn delete_published(&self, older_than: Duration, limit: usize)
        -> Result<u64, StoreError>;
}
