//! Guides: documentation only, no code.

/// # Writing a backend
///
/// The relay and the inbox consumer are written against four traits; a backend implements one of them and
/// knows nothing of the others. `outbox-postgres` implements [`Store`] and [`InboxStore`], `outbox-kafka`
/// implements [`Transport`] and [`MessageSource`], and `outbox_core::memory` (feature `testing`) holds
/// in-memory versions to compare with.
///
/// The traits use `async-trait`: the relay holds its store and transport as `Arc<dyn ..>` (backends chosen at
/// run time, one simple `Relay` type), and their calls are per batch, where the boxing costs nothing
/// measurable.
///
/// ## A `Store`: where events wait
///
/// The relay calls [`Store::claim_batch`], then [`Transport::publish`], then [`Store::complete`], and
/// [`Store::extend_lease`] every third of the lease while a publish runs. A store must keep this contract:
///
/// - **Per-key prefix claims.** For one `(topic, key)`, an event is claimable only when every earlier event of
///   that key is published or dead, or is claimed in the same call. A key is *blocked* from its first event that
///   is leased (lease not yet expired) or waiting for a retry; nothing after it is claimed. Walk pending events
///   in outbox order (`seq`), so that the claimed events of a key are a prefix of its pending ones. Claims of
///   concurrent relays must not interleave (PostgreSQL serializes them with an advisory lock).
/// - **Leases are owned.** A claim records the [`LeaseOwner`] and an expiry; an expired lease may be claimed by
///   anyone. `extend_lease` and `complete` act only on events the owner still holds; `complete` lists the
///   others in [`CompletionReport::lease_lost`] and leaves them alone: the relay that took them over decides.
/// - **Attempts are counted at claim.** `claim_batch` increments [`ClaimedEvent::attempts`], so an event whose
///   relay dies mid-publish still reaches the limit; `released` events get the attempt back.
/// - **One clock: the store's.** Lease expiry, retry delays (`Retry::delay`) and retention
///   (`delete_published`'s `older_than`) are measured on the store's own clock (the database's `now()`), never
///   the relay host's.
/// - **[`Completion`] semantics.** `published`: done (delete the row, or keep it with a publication time for
///   retention). `retries`: unlease, store the error, and keep the key blocked until `delay` passed.
///   `dead_letters`: set aside with the error; the key moves on. `released`: unlease at once and undo the
///   attempt count (the event was not tried).
/// - **Wake-ups are optional.** [`Store::wakeups`] may return a channel that changes when events are
///   committed; the relay polls anyway. Metrics the wake-up source records carry the labels it is given.
/// - **Backlog and ages are optional too.** [`Store::backlog`] feeds the pending/dead gauges; fill
///   [`ClaimedEvent::age`] (how long ago the event was enqueued, on the store's clock) for the commit→ack
///   histogram, or leave it zero.
///
/// ## A `Transport`: where events go
///
/// [`Transport::publish`] gets a batch in outbox order and returns one result per event, in the same order:
///
/// - `Ok(())` only once the broker acknowledged the event durably.
/// - [`PublishError::Unavailable`] when the broker could not be reached: not the event's fault. A batch that
///   fails only this way is an outage: released, no attempt counted, the relay backs off.
/// - [`PublishError::Rejected`] when the broker refused this event: counted, retried, then dead-lettered.
/// - [`PublishError::NotSent`] for a later event of a key whose earlier event failed in this batch: a
///   transport must not let it overtake. The relay releases it.
///
/// Hand the whole batch to the client before awaiting acknowledgements, and keep each key's order.
///
/// A transport that appends to a `Vec` (messages of a key that is "down" are refused, and its later events
/// come back as `NotSent`):
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::Mutex;
///
/// use outbox_core::{ClaimedEvent, PublishError, Transport};
///
/// #[derive(Default)]
/// struct VecTransport {
///     sent: Mutex<Vec<(String, String, String)>>, // topic, key, payload
///     down_keys: HashSet<String>,
/// }
///
/// #[async_trait::async_trait]
/// impl Transport for VecTransport {
///     async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
///         let mut sent = self.sent.lock().unwrap();
///         let mut failed: HashSet<(&str, &str)> = HashSet::new();
///         batch
///             .iter()
///             .map(|e| {
///                 let key = (e.topic.as_str(), e.key.as_str());
///                 if failed.contains(&key) {
///                     return Err(PublishError::NotSent); // never overtake a failed event of the key
///                 }
///                 if self.down_keys.contains(&e.key) {
///                     failed.insert(key);
///                     return Err(PublishError::Rejected(format!("key {} is down", e.key)));
///                 }
///                 sent.push((e.topic.clone(), e.key.clone(), e.payload.clone()));
///                 Ok(())
///             })
///             .collect()
///     }
/// }
///
/// # fn event(seq: i64, key: &str) -> ClaimedEvent {
/// #     ClaimedEvent { id: uuid::Uuid::now_v7(), seq, topic: "t".into(), key: key.into(), event_type: "e".into(),
/// #         aggregate_type: "a".into(), version: None, payload: format!("{{\"n\":{seq}}}"), headers: vec![],
/// #         attempts: 1, last_error: None, age: std::time::Duration::ZERO }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let transport = VecTransport { down_keys: HashSet::from(["b".to_string()]), ..Default::default() };
/// let batch = [event(1, "a"), event(2, "b"), event(3, "b"), event(4, "a")];
/// let results = transport.publish(&batch).await;
/// assert!(results[0].is_ok() && results[3].is_ok());
/// assert!(matches!(results[1], Err(PublishError::Rejected(_))));
/// assert_eq!(results[2], Err(PublishError::NotSent));
/// assert_eq!(transport.sent.lock().unwrap().len(), 2);
/// # }
/// ```
///
/// Hand it to a relay with `Relay::new(store, VecTransport::default(), RelayConfig::default())`.
///
/// A new `Store` is easiest to write against the behaviour of
/// `outbox_core::memory::MemoryStore` (its source is the shortest complete implementation of the rules
/// above) and to test by running the same scenarios on both: claim order, a blocked key, an expired lease
/// taken over, a mark refused after the lease was lost, retries and dead letters, retention.
///
/// ## An `InboxStore`: where a consumer records what it handled
///
/// [`InboxStore::process`] must, in **one** transaction: insert the event id (unique), and if it was there
/// already return [`Attempt::Duplicate`] without running the handler; else run the handler on the transaction's
/// connection, roll back and return [`Attempt::Failed`] if it fails, or commit and return
/// [`Attempt::Processed`]. A failure of the database itself is a `StoreError` (transient ones are retried
/// without counting an attempt). [`InboxStore::park`] records an event id as parked with its error, unless it
/// is recorded already. [`InboxStore::delete_processed`] deletes old processed records in bounded batches, on
/// the store's clock, and keeps parked ones.
///
/// ## A `MessageSource`: where a consumer reads
///
/// [`MessageSource::next`] returns the next message (build it with
/// [`InboxMessage::new`](crate::inbox::InboxMessage::new), which reads the `event-id` header) and must be
/// cancel-safe. [`MessageSource::commit`] confirms a message and everything before it in its partition, so that
/// a restarted consumer resumes after it; it is called only after the message is recorded, so a source may
/// deliver a message again (at least once) but must never skip one. Deliver the messages of a partition in
/// order; the consumer handles them one at a time.
///
/// [`Store`]: crate::Store
/// [`Store::claim_batch`]: crate::Store::claim_batch
/// [`Store::complete`]: crate::Store::complete
/// [`Store::extend_lease`]: crate::Store::extend_lease
/// [`Store::wakeups`]: crate::Store::wakeups
/// [`Store::backlog`]: crate::Store::backlog
/// [`ClaimedEvent::age`]: crate::ClaimedEvent::age
/// [`Transport`]: crate::Transport
/// [`Transport::publish`]: crate::Transport::publish
/// [`LeaseOwner`]: crate::LeaseOwner
/// [`CompletionReport::lease_lost`]: crate::CompletionReport::lease_lost
/// [`ClaimedEvent::attempts`]: crate::ClaimedEvent::attempts
/// [`Completion`]: crate::Completion
/// [`PublishError::Unavailable`]: crate::PublishError::Unavailable
/// [`PublishError::Rejected`]: crate::PublishError::Rejected
/// [`PublishError::NotSent`]: crate::PublishError::NotSent
/// [`InboxStore`]: crate::inbox::InboxStore
/// [`InboxStore::process`]: crate::inbox::InboxStore::process
/// [`InboxStore::park`]: crate::inbox::InboxStore::park
/// [`InboxStore::delete_processed`]: crate::inbox::InboxStore::delete_processed
/// [`Attempt::Duplicate`]: crate::inbox::Attempt::Duplicate
/// [`Attempt::Failed`]: crate::inbox::Attempt::Failed
/// [`Attempt::Processed`]: crate::inbox::Attempt::Processed
/// [`MessageSource`]: crate::inbox::MessageSource
/// [`MessageSource::next`]: crate::inbox::MessageSource::next
/// [`MessageSource::commit`]: crate::inbox::MessageSource::commit
pub mod backends {}
