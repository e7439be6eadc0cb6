//! The relay: claims committed events, publishes them, and records what became of them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::error::{PublishError, RelayError, StoreError};
use crate::message::ClaimedEvent;
use crate::retry::RetryPolicy;
use crate::store::{Completion, DeadLetter, LeaseOwner, Retry, Store};
use crate::telemetry::{names, RelayMetrics};
use crate::transport::Transport;

/// How a [`Relay`] behaves. Every field has a documented default; start from `RelayConfig::default()`.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most events claimed and published at once. Default 500.
    pub batch_size: usize,
    /// Batches in flight at once: the relay claims the next batch while the broker acknowledges the last one.
    /// Claims stay serialized per table and leased events block their key, so per-key order holds as it does
    /// with several relays. Default 2.
    pub concurrency: usize,
    /// How long the relay waits for new events when it found none and no wake-up arrives. Default 1 s.
    /// Retries that come due are picked up at the next poll.
    pub poll_interval: Duration,
    /// How long a claim is leased. The relay extends the lease while a publish is still running (every
    /// third of it); another relay takes the events over when it expires. Default 30 s.
    pub lease: Duration,
    /// Attempts per event before it is dead-lettered. Default 10.
    pub max_attempts: u32,
    /// Backoff between attempts of one event.
    pub retry: RetryPolicy,
    /// Backoff of the whole relay while the broker or the database is unreachable. Default 500 ms doubling
    /// up to 30 s.
    pub outage_backoff: RetryPolicy,
    /// On shutdown, how long to let an in-flight publish finish before releasing its events. Default 10 s.
    pub shutdown_grace: Duration,
    /// Keep published events this long, then delete them in batches (only for stores that keep published
    /// rows). `None`: no cleanup by the relay. Default `None`.
    pub retention: Option<Duration>,
    /// How often the retention cleanup runs. Default 10 s.
    pub cleanup_interval: Duration,
    /// Most rows one cleanup statement deletes. Default 1,000.
    pub cleanup_batch: usize,
    /// Labels added to every metric the relay (and its store) records, e.g. `("service", "orders")`, for
    /// dashboards shared by many services; add `("table", ...)` when one process relays several tables, whose
    /// topics would otherwise share gauges. `topic` and `event_type` are the relay's own and are ignored here.
    /// Default none. See [`telemetry`](crate::telemetry) for the metrics.
    pub metric_labels: Vec<(String, String)>,
    /// How often the relay reads the store's backlog (pending and dead events per topic, oldest pending age)
    /// for its gauges; one query, off the publishing path. `None`: never. Default 15 s.
    pub backlog_interval: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            concurrency: 2,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            max_attempts: 10,
            retry: RetryPolicy::default(),
            outage_backoff: RetryPolicy {
                initial: Duration::from_millis(500),
                multiplier: 2.0,
                max: Duration::from_secs(30),
                jitter: 0.2,
            },
            shutdown_grace: Duration::from_secs(10),
            retention: None,
            cleanup_interval: Duration::from_secs(10),
            cleanup_batch: 1_000,
            metric_labels: Vec::new(),
            backlog_interval: Some(Duration::from_secs(15)),
        }
    }
}

/// Counters of what a relay did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Events the broker acknowledged and the store recorded as published.
    pub published: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Events given back without counting an attempt (key blocked, outage, shutdown).
    pub released: u64,
    /// Events whose lease this relay lost before it could record them.
    pub lease_lost: u64,
    /// Batches in which every event failed as unavailable (broker outage).
    pub outages: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    released: AtomicU64,
    lease_lost: AtomicU64,
    outages: AtomicU64,
}

/// What one [`Relay::run_once`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Events claimed.
    pub claimed: usize,
    /// Events recorded as published.
    pub published: usize,
    /// Events scheduled for a retry.
    pub retried: usize,
    /// Events dead-lettered.
    pub dead_lettered: usize,
    /// Events released without an attempt.
    pub released: usize,
    /// Whether the whole batch failed as unavailable.
    pub outage: bool,
    /// Events whose lease was lost.
    pub lease_lost: usize,
}

/// Moves committed events from a [`Store`] to a [`Transport`].
///
/// Run several relays against one store for availability: claims are leases, so each event is published by
/// one relay at a time, and a crashed relay's events are taken over when its lease expires.
///
/// ```no_run
/// # async fn demo(store: impl outbox_core::Store + 'static, transport: impl outbox_core::Transport + 'static) {
/// use outbox_core::{Relay, RelayConfig};
/// use tokio_util::sync::CancellationToken;
///
/// let relay = Relay::new(store, transport, RelayConfig::default());
/// let shutdown = CancellationToken::new();
/// let stop = shutdown.clone();
/// tokio::spawn(async move { tokio::signal::ctrl_c().await.ok(); stop.cancel(); });
/// relay.run(shutdown).await.expect("relay failed");
/// # }
/// ```
pub struct Relay {
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: RelayConfig,
    owner: LeaseOwner,
    counters: Counters,
    metrics: RelayMetrics,
}

impl Relay {
    /// A relay with a fresh owner token.
    pub fn new(
        store: impl Store + 'static,
        transport: impl Transport + 'static,
        config: RelayConfig,
    ) -> Self {
        Self::from_arcs(Arc::new(store), Arc::new(transport), config)
    }

    /// A relay over shared backends.
    pub fn from_arcs(
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        config: RelayConfig,
    ) -> Self {
        Relay {
            store,
            transport,
            metrics: RelayMetrics::new(&config.metric_labels),
            config,
            owner: LeaseOwner::random(),
            counters: Counters::default(),
        }
    }

    /// This relay's lease owner token (its first pass loop's; every further loop claims under a token of its own).
    pub fn owner(&self) -> LeaseOwner {
        self.owner
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            published: c.published.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            lease_lost: c.lease_lost.load(Ordering::Relaxed),
            outages: c.outages.load(Ordering::Relaxed),
        }
    }

    /// Runs until `shutdown` is cancelled: then it stops claiming, lets the batch in flight finish (or
    /// releases it after [`RelayConfig::shutdown_grace`]) and returns.
    ///
    /// Database and broker failures are logged and retried with backoff; the only error returned is one
    /// retrying cannot fix, such as a missing migration.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        info!(owner = %self.owner, concurrency = self.config.concurrency.max(1), "relay started");
        self.metrics.announce();
        let wakeups = self.store.wakeups(&self.config.metric_labels).await;
        // A failure that stops one loop stops them all; the caller's token stops them too.
        let stop = shutdown.child_token();
        let loops = (0..self.config.concurrency.max(1)).map(|n| {
            let (wakeups, stop) = (wakeups.clone(), stop.clone());
            async move {
                // Each loop claims as its own owner, so that a loop's late mark is refused like another relay's.
                let owner = if n == 0 {
                    self.owner
                } else {
                    LeaseOwner::random()
                };
                let result = self.pass_loop(owner, wakeups, &stop, n == 0).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
        });
        let (results, ()) = tokio::join!(
            futures_util::future::join_all(loops),
            self.watch_backlog(&stop)
        );
        info!(owner = %self.owner, "relay stopped");
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    /// One loop of claim, publish, record. Several run side by side (`concurrency`); like separate relays, they
    /// never hold events of one key at once, because claims are serialized and leased events block their key.
    async fn pass_loop(
        &self,
        owner: LeaseOwner,
        mut wakeups: Option<tokio::sync::watch::Receiver<u64>>,
        shutdown: &CancellationToken,
        cleans_up: bool,
    ) -> Result<(), RelayError> {
        let mut store_failures = 0u32;
        let mut outages = 0u32;
        let mut cleanup_due = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if cleans_up
                && self.config.retention.is_some()
                && tokio::time::Instant::now() >= cleanup_due
            {
                self.cleanup().await;
                cleanup_due = tokio::time::Instant::now() + self.config.cleanup_interval;
            }
            let pause = match self.pass(owner, shutdown).await {
                Ok(report) => {
                    store_failures = 0;
                    if report.outage {
                        outages += 1;
                        Some(self.config.outage_backoff.delay(outages))
                    } else {
                        outages = 0;
                        if report.claimed == 0 {
                            self.wait_for_events(&mut wakeups, shutdown).await;
                        }
                        None
                    }
                }
                Err(StoreError::Backend(e)) => {
                    store_failures += 1;
                    self.metrics.store_error();
                    let delay = self.config.outage_backoff.delay(store_failures);
                    warn!(error = %e, failures = store_failures, retry_in = ?delay, "outbox store failed; retrying");
                    Some(delay)
                }
                Err(e) => return Err(RelayError::Store(e)),
            };
            if let Some(delay) = pause {
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        Ok(())
    }

    /// Claims one batch, publishes it and records the outcome. Useful to drive a relay step by step in tests.
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        self.pass(self.owner, &CancellationToken::new()).await
    }

    async fn wait_for_events(
        &self,
        wakeups: &mut Option<tokio::sync::watch::Receiver<u64>>,
        shutdown: &CancellationToken,
    ) {
        let poll = sleep(self.config.poll_interval);
        match wakeups {
            Some(rx) => {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            warn!("wake-up channel closed; falling back to polling");
                            *wakeups = None;
                        }
                    }
                    _ = poll => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = poll => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Refreshes the backlog gauges every `backlog_interval` until `stop`.
    async fn watch_backlog(&self, stop: &CancellationToken) {
        let Some(every) = self.config.backlog_interval else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match self.store.backlog().await {
                Ok(Some(topics)) => self.metrics.backlog(&topics),
                Ok(None) => return,
                Err(e) => debug!(error = %e, "could not read the backlog for the gauges"),
            }
        }
    }

    async fn cleanup(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        loop {
            match self
                .store
                .delete_published(retention, self.config.cleanup_batch)
                .await
            {
                Ok(n) if n as usize >= self.config.cleanup_batch => continue,
                Ok(n) => {
                    debug!(deleted = n, "retention cleanup done");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "retention cleanup failed");
                    return;
                }
            }
        }
    }

    async fn pass(
        &self,
        owner: LeaseOwner,
        shutdown: &CancellationToken,
    ) -> Result<PassReport, StoreError> {
        let started = tokio::time::Instant::now();
        let claim_span = info_span!(
            "outbox.claim",
            limit = self.config.batch_size,
            claimed = tracing::field::Empty
        );
        let batch = self
            .store
            .claim_batch(owner, self.config.batch_size, self.config.lease)
            .instrument(claim_span.clone())
            .await?;
        claim_span.record("claimed", batch.len());
        if batch.is_empty() {
            return Ok(PassReport::default());
        }
        let claimed = batch.len();
        self.metrics.claimed(claimed);
        let claim_done = tokio::time::Instant::now();

        // Events whose every allowed attempt was started without a result (the relays holding them died).
        let (exhausted, to_publish): (Vec<&ClaimedEvent>, Vec<&ClaimedEvent>) = batch
            .iter()
            .partition(|e| e.attempts > self.config.max_attempts);
        let to_publish: Vec<ClaimedEvent> = to_publish.into_iter().cloned().collect();

        let results = self
            .publish_with_heartbeat(owner, &to_publish, shutdown)
            .instrument(info_span!(
                "outbox.publish",
                events = to_publish.len(),
                first_event_id = ?to_publish.first().map(|e| e.id),
                last_event_id = ?to_publish.last().map(|e| e.id)
            ))
            .await;
        let publish_done = tokio::time::Instant::now();
        if !to_publish.is_empty() && results.is_some() {
            self.metrics.published_batch(publish_done - claim_done);
        }
        let mut completion = match results {
            Some(results) => decide(&to_publish, results, &self.config),
            None => Decision {
                completion: Completion {
                    released: to_publish.iter().map(|e| e.id).collect(),
                    ..Completion::default()
                },
                outage: false,
            },
        };
        for e in exhausted {
            let error = format!(
                "attempt limit ({}) reached: the relays holding it stopped before reporting a result (last error: {})",
                self.config.max_attempts,
                e.last_error.as_deref().unwrap_or("none")
            );
            warn!(event_id = %e.id, topic = %e.topic, key = %e.key, "dead-lettering event: {error}");
            completion
                .completion
                .dead_letters
                .push(DeadLetter { id: e.id, error });
        }

        let c = &completion.completion;
        let report = self
            .store
            .complete(owner, c)
            .instrument(info_span!(
                "outbox.mark",
                published = c.published.len(),
                retried = c.retries.len(),
                dead_lettered = c.dead_letters.len(),
                released = c.released.len()
            ))
            .await?;
        debug!(
            claimed,
            claim_ms = (claim_done - started).as_secs_f64() * 1e3,
            publish_ms = (publish_done - claim_done).as_secs_f64() * 1e3,
            mark_ms = publish_done.elapsed().as_secs_f64() * 1e3,
            "relay pass done"
        );
        if !report.lease_lost.is_empty() {
            warn!(
                %owner,
                events = report.lease_lost.len(),
                first = %report.lease_lost[0],
                "lease lost before the outcome was recorded; another relay owns these events and will publish them again"
            );
        }
        let lost = |ids: &[uuid::Uuid]| {
            ids.iter()
                .filter(|id| report.lease_lost.contains(id))
                .count()
        };
        self.record_outcomes(&batch, c, &report.lease_lost, publish_done - claim_done);
        let published = c.published.len() - lost(&c.published);
        let retried = c.retries.len() - lost(&c.retries.iter().map(|r| r.id).collect::<Vec<_>>());
        let dead =
            c.dead_letters.len() - lost(&c.dead_letters.iter().map(|d| d.id).collect::<Vec<_>>());
        let released = c.released.len() - lost(&c.released);
        let k = &self.counters;
        k.published.fetch_add(published as u64, Ordering::Relaxed);
        k.retried.fetch_add(retried as u64, Ordering::Relaxed);
        k.dead_lettered.fetch_add(dead as u64, Ordering::Relaxed);
        k.released.fetch_add(released as u64, Ordering::Relaxed);
        k.lease_lost
            .fetch_add(report.lease_lost.len() as u64, Ordering::Relaxed);
        if completion.outage {
            k.outages.fetch_add(1, Ordering::Relaxed);
            self.metrics.outage();
        }
        Ok(PassReport {
            claimed,
            published,
            retried,
            dead_lettered: dead,
            released,
            outage: completion.outage,
            lease_lost: report.lease_lost.len(),
        })
    }

    /// Counts what became of a batch's events by topic and event type, leaving out events whose lease was lost.
    fn record_outcomes(
        &self,
        batch: &[ClaimedEvent],
        c: &Completion,
        lease_lost: &[uuid::Uuid],
        claim_to_ack: Duration,
    ) {
        let lost: HashSet<uuid::Uuid> = lease_lost.iter().copied().collect();
        let by_id: HashMap<uuid::Uuid, &ClaimedEvent> = batch.iter().map(|e| (e.id, e)).collect();
        let pick = |ids: &mut dyn Iterator<Item = uuid::Uuid>| -> Vec<&ClaimedEvent> {
            ids.filter(|id| !lost.contains(id))
                .filter_map(|id| by_id.get(&id).copied())
                .collect()
        };
        let published = pick(&mut c.published.iter().copied());
        self.metrics
            .count_events(names::PUBLISHED, published.iter().copied());
        self.metrics.acked(published.iter().copied(), claim_to_ack);
        let retried = pick(&mut c.retries.iter().map(|r| r.id));
        self.metrics.count_events(names::RETRIED, retried);
        let dead = pick(&mut c.dead_letters.iter().map(|d| d.id));
        self.metrics.count_events(names::DEAD_LETTERED, dead);
        self.metrics.lease_lost(lost.len());
    }

    /// Publishes, extending the lease while the transport is still at work. `None` when shutdown came and the
    /// grace period ran out first.
    async fn publish_with_heartbeat(
        &self,
        owner: LeaseOwner,
        batch: &[ClaimedEvent],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Result<(), PublishError>>> {
        if batch.is_empty() {
            return Some(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = batch.iter().map(|e| e.id).collect();
        let publish = self.transport.publish(batch);
        tokio::pin!(publish);
        let beat = (self.config.lease / 3).max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        let grace = sleep(Duration::MAX / 4);
        tokio::pin!(grace);
        let mut stopping = false;
        loop {
            tokio::select! {
                results = &mut publish => {
                    if results.len() != batch.len() {
                        warn!(expected = batch.len(), got = results.len(), "transport returned a wrong number of results; treating the batch as unsent");
                        return Some(vec![Err(PublishError::Unavailable("transport returned a wrong number of results".into())); batch.len()]);
                    }
                    return Some(results);
                }
                _ = heartbeat.tick() => {
                    match self.store.extend_lease(owner, &ids, self.config.lease).await {
                        Ok(held) if held.len() < ids.len() => {
                            warn!(%owner, lost = ids.len() - held.len(), "lease lost while publishing");
                        }
                        Ok(_) => debug!(events = ids.len(), "lease extended"),
                        Err(e) => warn!(error = %e, "could not extend the lease"),
                    }
                }
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    grace.as_mut().reset(tokio::time::Instant::now() + self.config.shutdown_grace);
                }
                _ = &mut grace => {
                    warn!(events = batch.len(), "shutdown grace period over; releasing the batch in flight");
                    return None;
                }
            }
        }
    }
}

struct Decision {
    completion: Completion,
    outage: bool,
}

/// Turns a batch's publish results into what the store records, keeping each key's order: after the first
/// failure of a key, its later events are released (or, if they already went out, reported).
fn decide(
    batch: &[ClaimedEvent],
    results: Vec<Result<(), PublishError>>,
    config: &RelayConfig,
) -> Decision {
    let mut completion = Completion::default();
    let all_unavailable = results.iter().all(|r| {
        matches!(
            r,
            Err(PublishError::Unavailable(_)) | Err(PublishError::NotSent)
        )
    }) && results
        .iter()
        .any(|r| matches!(r, Err(PublishError::Unavailable(_))));
    if all_unavailable {
        let first = results.iter().find_map(|r| r.as_ref().err());
        warn!(events = batch.len(), error = ?first, "broker unavailable for the whole batch; backing off");
        completion.released = batch.iter().map(|e| e.id).collect();
        return Decision {
            completion,
            outage: true,
        };
    }
    let mut blocked: HashMap<(&str, &str), ()> = HashMap::new();
    for (event, result) in batch.iter().zip(results) {
        let key = (event.topic.as_str(), event.key.as_str());
        let is_blocked = blocked.contains_key(&key);
        match result {
            Ok(()) => {
                if is_blocked {
                    warn!(event_id = %event.id, topic = %event.topic, key = %event.key,
                        "event was acknowledged although an earlier event of its key failed; it reached the broker out of order");
                }
                completion.published.push(event.id);
            }
            Err(PublishError::NotSent) => completion.released.push(event.id),
            Err(_) if is_blocked => completion.released.push(event.id),
            Err(error) => {
                // The broker being unreachable for this event's partition is not the event's fault: retry it
                // without using up an attempt, so a partial broker outage dead-letters nothing.
                let counted = !matches!(error, PublishError::Unavailable(_));
                let error = error.to_string();
                if counted && event.attempts >= config.max_attempts {
                    warn!(event_id = %event.id, topic = %event.topic, key = %event.key, attempts = event.attempts,
                        %error, "dead-lettering event after its last attempt");
                    completion.dead_letters.push(DeadLetter {
                        id: event.id,
                        error,
                    });
                } else {
                    let delay = config.retry.delay(event.attempts);
                    warn!(event_id = %event.id, topic = %event.topic, key = %event.key, attempts = event.attempts,
                        retry_in = ?delay, %error, "publish failed; will retry");
                    completion.retries.push(Retry {
                        id: event.id,
                        delay,
                        error,
                        counted,
                    });
                    blocked.insert(key, ());
                }
            }
        }
    }
    Decision {
        completion,
        outage: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64, key: &str, attempts: u32) -> ClaimedEvent {
        ClaimedEvent {
            id: uuid::Uuid::from_u128(n as u128),
            seq: n,
            topic: "t".into(),
            key: key.into(),
            event_type: "e".into(),
            aggregate_type: "a".into(),
            version: None,
            payload: "{}".into(),
            headers: vec![],
            attempts,
            last_error: None,
            age: Duration::ZERO,
        }
    }

    fn id(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn a_failure_holds_back_only_later_events_of_its_key() {
        let batch = [
            event(1, "k", 1),
            event(2, "l", 1),
            event(3, "k", 1),
            event(4, "l", 1),
        ];
        let results = vec![
            Err(PublishError::Rejected("too large".into())),
            Ok(()),
            Err(PublishError::NotSent),
            Ok(()),
        ];
        let d = decide(&batch, results, &RelayConfig::default());
        assert!(!d.outage);
        assert_eq!(d.completion.published, vec![id(2), id(4)]);
        assert_eq!(d.completion.retries.len(), 1);
        assert_eq!(d.completion.retries[0].id, id(1));
        assert_eq!(d.completion.released, vec![id(3)]);
    }

    #[test]
    fn the_last_attempt_dead_letters_and_unblocks_the_key() {
        let config = RelayConfig {
            max_attempts: 3,
            ..RelayConfig::default()
        };
        let batch = [event(1, "k", 3), event(2, "k", 1)];
        let results = vec![Err(PublishError::Rejected("too large".into())), Ok(())];
        let d = decide(&batch, results, &config);
        assert_eq!(d.completion.dead_letters.len(), 1);
        assert!(d.completion.dead_letters[0].error.contains("too large"));
        assert_eq!(d.completion.published, vec![id(2)]);
        assert!(d.completion.retries.is_empty());
    }

    #[test]
    fn an_unavailable_partition_retries_without_using_up_attempts() {
        let config = RelayConfig {
            max_attempts: 3,
            ..RelayConfig::default()
        };
        let batch = [event(1, "k", 3), event(2, "l", 1)];
        let results = vec![
            Err(PublishError::Unavailable("leader not available".into())),
            Ok(()),
        ];
        let d = decide(&batch, results, &config);
        assert!(!d.outage);
        assert!(
            d.completion.dead_letters.is_empty(),
            "not dead-lettered at its last attempt"
        );
        assert_eq!(d.completion.retries.len(), 1);
        assert!(!d.completion.retries[0].counted);
        assert_eq!(d.completion.published, vec![id(2)]);
    }

    #[test]
    fn a_batch_that_failed_as_unavailable_is_an_outage_and_counts_no_attempt() {
        let batch = [event(1, "k", 1), event(2, "k", 1)];
        let results = vec![
            Err(PublishError::Unavailable("all brokers down".into())),
            Err(PublishError::NotSent),
        ];
        let d = decide(&batch, results, &RelayConfig::default());
        assert!(d.outage);
        assert_eq!(d.completion.released, vec![id(1), id(2)]);
        assert!(d.completion.retries.is_empty());
    }
}
