//! The in-memory backends (feature `testing`) behave like the real ones: claim order and key blocking, leases,
//! retries, dead letters, replay, retention, and the transport's record. Time is tokio's paused clock.

use std::time::Duration;

use outbox_core::memory::{drain, EventStatus, MemoryStore, MemoryTransport};
use outbox_core::{
    Completion, LeaseOwner, OutboxEvent, Relay, RelayConfig, Retry, RetryPolicy, Store,
};
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "orders", event_type = "order.placed.v1", version = 2)]
struct OrderPlaced {
    #[outbox(key)]
    order_id: u64,
    n: u32,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "payments", event_type = "payment.taken.v1")]
struct PaymentTaken {
    #[outbox(key)]
    order_id: u64,
    cents: u64,
}

const LEASE: Duration = Duration::from_secs(30);

fn quick(max_attempts: u32) -> RelayConfig {
    RelayConfig {
        max_attempts,
        retry: RetryPolicy {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: 0.0,
        },
        ..RelayConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn claims_are_in_outbox_order_and_stop_at_a_blocked_key() {
    let store = MemoryStore::new();
    let a1 = store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    let b1 = store.enqueue(&OrderPlaced { order_id: 2, n: 1 }).unwrap();
    let a2 = store.enqueue(&OrderPlaced { order_id: 1, n: 2 }).unwrap();
    let b2 = store.enqueue(&OrderPlaced { order_id: 2, n: 2 }).unwrap();

    let first = LeaseOwner::random();
    let claimed = store.claim_batch(first, 1, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), [a1]);
    assert_eq!(claimed[0].attempts, 1, "attempts are counted at claim");

    // Key 1 is leased: its later event waits; key 2 flows, in order.
    let second = LeaseOwner::random();
    let claimed = store.claim_batch(second, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), [b1, b2]);

    store
        .complete(
            first,
            &Completion {
                published: vec![a1],
                ..Completion::default()
            },
        )
        .await
        .unwrap();
    let claimed = store.claim_batch(first, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), [a2]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_taken_over_and_the_old_owner_is_refused() {
    let store = MemoryStore::new();
    let id = store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    let (old, new) = (LeaseOwner::random(), LeaseOwner::random());
    store.claim_batch(old, 10, LEASE).await.unwrap();

    assert_eq!(store.extend_lease(old, &[id], LEASE).await.unwrap(), [id]);
    tokio::time::advance(LEASE - Duration::from_secs(1)).await;
    assert!(
        store.claim_batch(new, 10, LEASE).await.unwrap().is_empty(),
        "the extended lease still holds"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let taken = store.claim_batch(new, 10, LEASE).await.unwrap();
    assert_eq!(taken[0].id, id);
    assert_eq!(taken[0].attempts, 2);

    assert!(store
        .extend_lease(old, &[id], LEASE)
        .await
        .unwrap()
        .is_empty());
    let report = store
        .complete(
            old,
            &Completion {
                published: vec![id],
                ..Completion::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.lease_lost, [id]);
    assert_eq!(store.events_with_status(EventStatus::Pending).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_blocks_its_key_until_its_delay_passed_and_a_release_gives_the_attempt_back() {
    let store = MemoryStore::new();
    let a1 = store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    let a2 = store.enqueue(&OrderPlaced { order_id: 1, n: 2 }).unwrap();
    let owner = LeaseOwner::random();
    store.claim_batch(owner, 1, LEASE).await.unwrap();
    store
        .complete(
            owner,
            &Completion {
                retries: vec![Retry {
                    id: a1,
                    delay: Duration::from_secs(5),
                    error: "boom".into(),
                    counted: true,
                }],
                ..Completion::default()
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_batch(owner, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a2 waits behind a1's retry"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    let claimed = store.claim_batch(owner, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), [a1, a2]);
    assert_eq!(claimed[0].attempts, 2);
    assert_eq!(claimed[0].last_error.as_deref(), Some("boom"));

    store
        .complete(
            owner,
            &Completion {
                released: vec![a1, a2],
                ..Completion::default()
            },
        )
        .await
        .unwrap();
    let again = store.claim_batch(owner, 10, LEASE).await.unwrap();
    assert_eq!(
        again.iter().map(|e| e.attempts).collect::<Vec<_>>(),
        [2, 1],
        "a release does not count"
    );
}

#[tokio::test(start_paused = true)]
async fn the_relay_retries_then_dead_letters_and_a_replay_goes_out_first() {
    let store = MemoryStore::new();
    let transport = MemoryTransport::new();
    let relay = Relay::new(store.clone(), transport.clone(), quick(3));
    transport.reject_key("orders", "1", 3, "too large");
    let first = store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    store.enqueue(&OrderPlaced { order_id: 1, n: 2 }).unwrap();
    store.enqueue(&OrderPlaced { order_id: 2, n: 1 }).unwrap();

    let report = drain(&relay).await.unwrap();
    assert_eq!((report.published, report.retried), (1, 1), "{report:?}");
    assert_eq!(transport.published_for_key("orders", "1").len(), 0);
    // 1 s, then 2 s of backoff: the third attempt dead-letters the event and frees its key.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(drain(&relay).await.unwrap().retried, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let report = drain(&relay).await.unwrap();
    assert_eq!(
        (report.dead_lettered, report.published),
        (1, 1),
        "{report:?}"
    );
    let dead = store.events_with_status(EventStatus::Dead);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, first);
    assert!(dead[0].last_error.as_deref().unwrap().contains("too large"));
    assert_eq!(relay.stats().dead_lettered, 1);

    // Replayed, it is published again with a fresh attempt count.
    assert!(store.replay(first));
    assert!(!store.replay(first), "only dead events are replayed");
    store.enqueue(&OrderPlaced { order_id: 1, n: 3 }).unwrap();
    drain(&relay).await.unwrap();
    let ns: Vec<u64> = transport
        .published_for_key("orders", "1")
        .iter()
        .map(|m| m.payload["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        [2, 1, 3],
        "the replay goes out before later events of its key"
    );
}

/// A dead letter replayed while a later event of its key is in flight waits for it.
#[tokio::test(start_paused = true)]
async fn a_replay_waits_while_a_later_event_of_its_key_is_in_flight() {
    let store = MemoryStore::new();
    let first = store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    let second = store.enqueue(&OrderPlaced { order_id: 1, n: 2 }).unwrap();
    let (dead_owner, busy_owner) = (LeaseOwner::random(), LeaseOwner::random());
    store.claim_batch(dead_owner, 1, LEASE).await.unwrap();
    let completion = Completion {
        dead_letters: vec![outbox_core::DeadLetter {
            id: first,
            error: "refused".into(),
        }],
        ..Completion::default()
    };
    store.complete(dead_owner, &completion).await.unwrap();
    let in_flight = store.claim_batch(busy_owner, 10, LEASE).await.unwrap();
    assert_eq!(in_flight[0].id, second);

    assert!(store.replay(first));
    assert!(
        store
            .claim_batch(LeaseOwner::random(), 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "one key never has two events in flight"
    );
    let done = Completion {
        published: vec![second],
        ..Completion::default()
    };
    store.complete(busy_owner, &done).await.unwrap();
    let after = store
        .claim_batch(LeaseOwner::random(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![first]);
}

#[tokio::test(start_paused = true)]
async fn an_outage_counts_no_attempts() {
    let store = MemoryStore::new();
    let transport = MemoryTransport::new();
    let relay = Relay::new(store.clone(), transport.clone(), quick(1));
    store.enqueue(&OrderPlaced { order_id: 1, n: 1 }).unwrap();
    transport.set_unavailable(true);
    let report = drain(&relay).await.unwrap();
    assert!(report.outage);
    assert_eq!(report.dead_lettered, 0);
    transport.set_unavailable(false);
    assert_eq!(drain(&relay).await.unwrap().published, 1);
    assert!(store.events_with_status(EventStatus::Dead).is_empty());
}

#[tokio::test(start_paused = true)]
async fn published_events_are_deleted_after_their_retention_in_batches() {
    let store = MemoryStore::new();
    let transport = MemoryTransport::new();
    let relay = Relay::new(store.clone(), transport, RelayConfig::default());
    for n in 0..5 {
        store.enqueue(&OrderPlaced { order_id: 1, n }).unwrap();
    }
    drain(&relay).await.unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(store.delete_published(hour, 10).await.unwrap(), 0);
    tokio::time::advance(hour).await;
    assert_eq!(store.delete_published(hour, 3).await.unwrap(), 3);
    assert_eq!(store.delete_published(hour, 3).await.unwrap(), 2);
    assert!(store.events().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_transport_records_by_topic_key_and_event_type() {
    let store = MemoryStore::new();
    let transport = MemoryTransport::new();
    let relay = Relay::new(store.clone(), transport.clone(), RelayConfig::default());
    let placed = store.enqueue(&OrderPlaced { order_id: 7, n: 1 }).unwrap();
    store
        .enqueue(&PaymentTaken {
            order_id: 7,
            cents: 990,
        })
        .unwrap();
    store.enqueue(&OrderPlaced { order_id: 8, n: 1 }).unwrap();
    drain(&relay).await.unwrap();

    assert_eq!(transport.published().len(), 3);
    assert_eq!(transport.published_to("orders").len(), 2);
    let payments = transport.published_of_type("payment.taken.v1");
    assert_eq!(payments.len(), 1);
    assert_eq!(
        payments[0].payload,
        serde_json::json!({ "order_id": 7, "cents": 990 })
    );
    assert_eq!(payments[0].aggregate_type, "payments");
    let seven = transport.published_for_key("orders", "7");
    assert_eq!(seven.len(), 1);
    assert_eq!(seven[0].id, placed);
    assert_eq!(seven[0].version, Some(2));
    assert_eq!(seven[0].event_type, "order.placed.v1");

    transport.clear();
    assert!(transport.published().is_empty());
}
