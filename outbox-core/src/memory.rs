//! In-memory backends for tests: a [`MemoryStore`] with the same claim rules as the PostgreSQL store, and a
//! [`MemoryTransport`] that records what would be published and can be told to fail.
//!
//! Time is `tokio::time`, so tests can pause and advance it.
//!
//! ```
//! use outbox_core::memory::{MemoryStore, MemoryTransport};
//! use outbox_core::{OutboxEvent, Relay, RelayConfig};
//! # use serde::Serialize;
//!
//! #[derive(Serialize, OutboxEvent)]
//! #[outbox(topic = "orders")]
//! struct OrderPlaced { #[outbox(key)] order_id: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryStore::new();
//! let transport = MemoryTransport::new();
//! store.enqueue(&OrderPlaced { order_id: 7 }).unwrap();
//!
//! let relay = Relay::new(store.clone(), transport.clone(), RelayConfig::default());
//! relay.run_once().await.unwrap();
//!
//! let sent = transport.published();
//! assert_eq!(sent.len(), 1);
//! assert_eq!(sent[0].key, "7");
//! assert_eq!(sent[0].event_type, "OrderPlaced");
//! assert_eq!(sent[0].payload["order_id"], 7);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{EncodeError, PublishError, StoreError};
use crate::message::{ClaimedEvent, NewMessage};
use crate::relay::{PassReport, Relay};
use crate::store::{Completion, CompletionReport, LeaseOwner, Store, TopicBacklog};
use crate::transport::Transport;
use crate::OutboxEvent;

/// Runs [`Relay::run_once`] until a pass claims nothing (or the whole batch failed as unavailable, which would
/// otherwise repeat forever); returns the passes' reports added up.
///
/// Events waiting for a retry are not claimable until their delay passed: with tokio's clock paused
/// (`#[tokio::test(start_paused = true)]`), `tokio::time::advance` past the delay and drain again.
///
/// ```
/// use outbox_core::memory::{drain, MemoryStore, MemoryTransport};
/// use outbox_core::{OutboxEvent, Relay, RelayConfig};
/// # use serde::Serialize;
/// # #[derive(Serialize, OutboxEvent)]
/// # #[outbox(topic = "orders")]
/// # struct OrderPlaced { #[outbox(key)] order_id: u64 }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// let transport = MemoryTransport::new();
/// for order_id in 0..1200 {
///     store.enqueue(&OrderPlaced { order_id }).unwrap();
/// }
/// let relay = Relay::new(store.clone(), transport.clone(), RelayConfig::default());
/// let report = drain(&relay).await.unwrap();
/// assert_eq!(report.published, 1200); // three passes of at most 500
/// assert_eq!(transport.published().len(), 1200);
/// # }
/// ```
///
/// # Errors
/// The first store error.
pub async fn drain(relay: &Relay) -> Result<PassReport, StoreError> {
    let mut total = PassReport::default();
    loop {
        let pass = relay.run_once().await?;
        total.claimed += pass.claimed;
        total.published += pass.published;
        total.retried += pass.retried;
        total.dead_lettered += pass.dead_lettered;
        total.released += pass.released;
        total.lease_lost += pass.lease_lost;
        total.outage |= pass.outage;
        if pass.claimed == 0 || pass.outage {
            return Ok(total);
        }
    }
}

/// The state of an event in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Waiting to be published (possibly leased, possibly waiting for a retry).
    Pending,
    /// Acknowledged by the broker.
    Published,
    /// Failed for the last time.
    Dead,
}

/// A snapshot of one event in a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The event as a relay would claim it.
    pub event: ClaimedEvent,
    /// Its status.
    pub status: EventStatus,
}

#[derive(Debug)]
struct Row {
    event: ClaimedEvent,
    status: EventStatus,
    lease: Option<(LeaseOwner, Instant)>,
    available_at: Instant,
    published_at: Option<Instant>,
    created_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    rows: BTreeMap<i64, Row>,
    by_id: HashMap<Uuid, i64>,
    next_seq: i64,
}

/// An in-memory [`Store`]. Clones share the same events.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    wake: Arc<watch::Sender<u64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            state: Arc::new(Mutex::new(State::default())),
            wake: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues an event as if its transaction committed now; returns its id.
    ///
    /// # Errors
    /// When the event does not serialize; nothing is stored then.
    pub fn enqueue<E: OutboxEvent + ?Sized>(&self, event: &E) -> Result<Uuid, EncodeError> {
        let message = NewMessage::from_event(event)?;
        Ok(self.enqueue_message(message))
    }

    /// Enqueues an already encoded message.
    pub fn enqueue_message(&self, message: NewMessage) -> Uuid {
        let id = message.id;
        {
            let mut state = self.lock();
            state.next_seq += 1;
            let seq = state.next_seq;
            state.by_id.insert(id, seq);
            state.rows.insert(
                seq,
                Row {
                    event: ClaimedEvent {
                        id,
                        seq,
                        topic: message.topic,
                        key: message.key,
                        event_type: message.event_type,
                        aggregate_type: message.aggregate_type,
                        version: message.version,
                        payload: message.payload.get().to_owned(),
                        headers: message.headers,
                        attempts: 0,
                        last_error: None,
                        age: Duration::ZERO,
                    },
                    status: EventStatus::Pending,
                    lease: None,
                    available_at: Instant::now(),
                    published_at: None,
                    created_at: Instant::now(),
                },
            );
        }
        self.wake.send_modify(|n| *n += 1);
        id
    }

    /// Every event still in the store, in outbox order.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.lock()
            .rows
            .values()
            .map(|r| StoredEvent {
                event: r.event.clone(),
                status: r.status,
            })
            .collect()
    }

    /// Events with `status`, in outbox order.
    pub fn events_with_status(&self, status: EventStatus) -> Vec<ClaimedEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.status == status)
            .map(|e| e.event)
            .collect()
    }

    /// Puts a dead-lettered event back in its key's order with a fresh attempt count; returns whether it was
    /// dead.
    pub fn replay(&self, id: Uuid) -> bool {
        let replayed = {
            let mut state = self.lock();
            let Some(seq) = state.by_id.get(&id).copied() else {
                return false;
            };
            match state.rows.get_mut(&seq) {
                Some(row) if row.status == EventStatus::Dead => {
                    row.status = EventStatus::Pending;
                    row.event.attempts = 0;
                    row.available_at = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if replayed {
            self.wake.send_modify(|n| *n += 1);
        }
        replayed
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim_batch(
        &self,
        owner: LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        // A key with any row in flight or waiting for a retry is blocked as a whole, also for rows before
        // that one (a replayed dead letter keeps its earlier position).
        let mut blocked: HashSet<(String, String)> = state
            .rows
            .values()
            .filter(|row| {
                row.status == EventStatus::Pending
                    && (matches!(row.lease, Some((_, until)) if until > now)
                        || row.available_at > now)
            })
            .map(|row| (row.event.topic.clone(), row.event.key.clone()))
            .collect();
        let mut claimed = Vec::new();
        for row in state.rows.values_mut() {
            if claimed.len() >= limit {
                break;
            }
            if row.status != EventStatus::Pending {
                continue;
            }
            let key = (row.event.topic.clone(), row.event.key.clone());
            if blocked.contains(&key) {
                continue;
            }
            let leased = matches!(row.lease, Some((_, until)) if until > now);
            if leased || row.available_at > now {
                blocked.insert(key);
                continue;
            }
            row.lease = Some((owner, now + lease));
            row.event.attempts += 1;
            row.event.age = now - row.created_at;
            claimed.push(row.event.clone());
        }
        Ok(claimed)
    }

    async fn extend_lease(
        &self,
        owner: LeaseOwner,
        ids: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut held = Vec::new();
        for id in ids {
            let Some(seq) = state.by_id.get(id).copied() else {
                continue;
            };
            if let Some(row) = state.rows.get_mut(&seq) {
                if row.status == EventStatus::Pending
                    && matches!(row.lease, Some((o, _)) if o == owner)
                {
                    row.lease = Some((owner, now + lease));
                    held.push(*id);
                }
            }
        }
        Ok(held)
    }

    async fn complete(
        &self,
        owner: LeaseOwner,
        completion: &Completion,
    ) -> Result<CompletionReport, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut report = CompletionReport::default();
        let mut apply = |state: &mut State, id: &Uuid, f: &mut dyn FnMut(&mut Row)| {
            let row = state
                .by_id
                .get(id)
                .copied()
                .and_then(|seq| state.rows.get_mut(&seq));
            match row {
                Some(row)
                    if row.status == EventStatus::Pending
                        && matches!(row.lease, Some((o, _)) if o == owner) =>
                {
                    row.lease = None;
                    f(row);
                }
                _ => report.lease_lost.push(*id),
            }
        };
        for id in &completion.published {
            apply(&mut state, id, &mut |row| {
                row.status = EventStatus::Published;
                row.published_at = Some(now);
            });
        }
        for retry in &completion.retries {
            apply(&mut state, &retry.id, &mut |row| {
                row.available_at = now + retry.delay;
                row.event.last_error = Some(retry.error.clone());
                if !retry.counted {
                    row.event.attempts = row.event.attempts.saturating_sub(1);
                }
            });
        }
        for dead in &completion.dead_letters {
            apply(&mut state, &dead.id, &mut |row| {
                row.status = EventStatus::Dead;
                row.event.last_error = Some(dead.error.clone());
            });
        }
        for id in &completion.released {
            apply(&mut state, id, &mut |row| {
                row.event.attempts = row.event.attempts.saturating_sub(1);
            });
        }
        Ok(report)
    }

    async fn wakeups(&self, _metric_labels: &[(String, String)]) -> Option<watch::Receiver<u64>> {
        Some(self.wake.subscribe())
    }

    async fn backlog(&self) -> Result<Option<Vec<TopicBacklog>>, StoreError> {
        let now = Instant::now();
        let state = self.lock();
        let mut topics: BTreeMap<&str, TopicBacklog> = BTreeMap::new();
        for row in state.rows.values() {
            let t = topics
                .entry(row.event.topic.as_str())
                .or_insert_with(|| TopicBacklog {
                    topic: row.event.topic.clone(),
                    ..TopicBacklog::default()
                });
            match row.status {
                EventStatus::Pending => {
                    t.pending += 1;
                    let age = now - row.created_at;
                    t.oldest_pending_age = Some(t.oldest_pending_age.map_or(age, |a| a.max(age)));
                }
                EventStatus::Dead => t.dead += 1,
                EventStatus::Published => {}
            }
        }
        Ok(Some(
            topics
                .into_values()
                .filter(|t| t.pending > 0 || t.dead > 0)
                .collect(),
        ))
    }

    async fn delete_published(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        let doomed: Vec<(i64, Uuid)> = state
            .rows
            .iter()
            .filter(|(_, r)| matches!(r.published_at, Some(t) if t + older_than <= now))
            .take(limit)
            .map(|(seq, r)| (*seq, r.event.id))
            .collect();
        for (seq, id) in &doomed {
            state.rows.remove(seq);
            state.by_id.remove(id);
        }
        Ok(doomed.len() as u64)
    }
}

/// A message a [`MemoryTransport`] accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedMessage {
    /// The event id.
    pub id: Uuid,
    /// The topic.
    pub topic: String,
    /// The key.
    pub key: String,
    /// The event type.
    pub event_type: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The payload version.
    pub version: Option<u32>,
    /// The payload, parsed.
    pub payload: serde_json::Value,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct TransportState {
    published: Vec<PublishedMessage>,
    /// Remaining forced failures per (topic, key).
    failures: HashMap<(String, String), (u32, String)>,
    unavailable: bool,
}

/// An in-memory [`Transport`] that records every message it accepts. Clones share the record.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    state: Arc<Mutex<TransportState>>,
}

impl MemoryTransport {
    /// A transport that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, TransportState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything accepted so far, in order.
    pub fn published(&self) -> Vec<PublishedMessage> {
        self.lock().published.clone()
    }

    /// What was accepted for `topic`, in order.
    pub fn published_to(&self, topic: &str) -> Vec<PublishedMessage> {
        self.lock()
            .published
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// What was accepted for `(topic, key)`, in order: the order a consumer of that key would see.
    pub fn published_for_key(&self, topic: &str, key: &str) -> Vec<PublishedMessage> {
        self.lock()
            .published
            .iter()
            .filter(|m| m.topic == topic && m.key == key)
            .cloned()
            .collect()
    }

    /// What was accepted with `event_type`, in order.
    pub fn published_of_type(&self, event_type: &str) -> Vec<PublishedMessage> {
        self.lock()
            .published
            .iter()
            .filter(|m| m.event_type == event_type)
            .cloned()
            .collect()
    }

    /// Forgets what was accepted so far (forced failures stay).
    pub fn clear(&self) {
        self.lock().published.clear();
    }

    /// Rejects the next `times` events of `(topic, key)` with `error`.
    pub fn reject_key(&self, topic: &str, key: &str, times: u32, error: &str) {
        self.lock()
            .failures
            .insert((topic.into(), key.into()), (times, error.into()));
    }

    /// While `true`, every event fails as unavailable (a broker outage).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(&self, batch: &[ClaimedEvent]) -> Vec<Result<(), PublishError>> {
        let mut state = self.lock();
        let mut failed_keys: HashSet<(String, String)> = HashSet::new();
        batch
            .iter()
            .map(|e| {
                if state.unavailable {
                    return Err(PublishError::Unavailable("memory transport is down".into()));
                }
                let key = (e.topic.clone(), e.key.clone());
                if failed_keys.contains(&key) {
                    return Err(PublishError::NotSent);
                }
                if let Some((left, error)) = state.failures.get_mut(&key) {
                    if *left > 0 {
                        *left -= 1;
                        let error = error.clone();
                        failed_keys.insert(key);
                        return Err(PublishError::Rejected(error));
                    }
                }
                let payload = serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null);
                state.published.push(PublishedMessage {
                    id: e.id,
                    topic: e.topic.clone(),
                    key: e.key.clone(),
                    event_type: e.event_type.clone(),
                    aggregate_type: e.aggregate_type.clone(),
                    version: e.version,
                    payload,
                    headers: e.headers.clone(),
                });
                Ok(())
            })
            .collect()
    }
}
