//! The PostgreSQL store on a real server: enqueue in the caller's transaction, claim order, leases, retries
//! and dead letters (with the in-memory transport, so only the database is under test).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use outbox_core::memory::MemoryTransport;
use outbox_core::{
    Completion, DeadLetter, LeaseOwner, OutboxEvent, Relay, RelayConfig, RelayError, RetryPolicy,
    Store, StoreError,
};
use outbox_postgres::{Error, PgOutboxConfig, PgStore, ReplaySelector, TableName};
use serde::Serialize;

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "store.events")]
struct Step {
    #[outbox(key)]
    key: String,
    n: u32,
}

/// Serializing a map with non-string keys to JSON fails.
#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "store.events")]
struct Unserializable {
    #[outbox(key)]
    key: String,
    by_pair: HashMap<(u8, u8), u32>,
}

#[derive(Serialize, OutboxEvent)]
#[outbox(topic = "store.events")]
struct Noted {
    #[outbox(key)]
    key: String,
    note: String,
}

fn step(key: &str, n: u32) -> Step {
    Step { key: key.into(), n }
}

async fn count(pool: &sqlx::PgPool, config: &PgOutboxConfig, filter: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {} WHERE {filter}",
        config.table.quoted()
    ))
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn a_payload_that_cannot_serialize_writes_nothing_and_leaves_the_transaction_usable() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "unserializable").await;
    let outbox = common::outbox(&config);

    let mut tx = pool.begin().await.expect("begin");
    let bad = Unserializable {
        key: "k".into(),
        by_pair: HashMap::from([((1, 2), 3)]),
    };
    let error = outbox.enqueue(&mut tx, &bad).await.expect_err("must fail");
    assert!(
        matches!(error, Error::Encode(outbox_core::EncodeError::Payload(_))),
        "{error:?}"
    );
    assert!(error.to_string().contains("serialized"), "{error}");
    // A NUL character, which jsonb cannot store, is refused before the insert, not by an aborted transaction.
    let error = outbox
        .enqueue(
            &mut tx,
            &Step {
                key: "k\0".into(),
                n: 0,
            },
        )
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            error,
            Error::Encode(outbox_core::EncodeError::NulCharacter { field: "key" })
        ),
        "{error:?}"
    );
    let error = outbox
        .enqueue(
            &mut tx,
            &Noted {
                key: "k".into(),
                note: "a\0b".into(),
            },
        )
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            error,
            Error::Encode(outbox_core::EncodeError::NulCharacter { field: "payload" })
        ),
        "{error:?}"
    );
    // The transaction is still usable: a good event in the same transaction commits.
    outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("the transaction is still usable");
    tx.commit().await.expect("commit");
    assert_eq!(count(&pool, &config, "true").await, 1);

    let error = outbox
        .enqueue_all(&mut pool.acquire().await.expect("conn"), &[bad])
        .await
        .expect_err("must fail");
    assert!(matches!(error, Error::Encode(_)));
    assert_eq!(
        count(&pool, &config, "true").await,
        1,
        "enqueue_all wrote nothing"
    );
}

#[tokio::test]
async fn enqueue_all_keeps_the_order_of_its_events() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "enqueue_all_order").await;
    let outbox = common::outbox(&config);
    let events: Vec<Step> = (0..2_000)
        .map(|n| step(&format!("k{}", n % 7), n))
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    let ids = outbox
        .enqueue_all(&mut tx, &events)
        .await
        .expect("enqueue_all");
    tx.commit().await.expect("commit");
    let stored: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM {} ORDER BY seq",
        config.table.quoted()
    ))
    .fetch_all(&pool)
    .await
    .expect("ids");
    assert_eq!(stored, ids, "positions follow the order of the slice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_transactions_take_positions_in_commit_order() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "commit_order").await;
    let outbox = common::outbox(&config);

    let mut first = pool.begin().await.expect("begin");
    let first_id = outbox
        .enqueue(&mut first, &step("k", 1))
        .await
        .expect("enqueue");

    // A second transaction on the same key waits for the first to finish before it takes a position.
    let (pool2, outbox2) = (pool.clone(), outbox.clone());
    let second = tokio::spawn(async move {
        let mut tx = pool2.begin().await.expect("begin");
        let id = outbox2
            .enqueue(&mut tx, &step("k", 2))
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        id
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second transaction must wait for the key"
    );

    // Another key is not held up, and takes a position in between.
    let mut other = pool.begin().await.expect("begin");
    let other_id = outbox
        .enqueue(&mut other, &step("other", 1))
        .await
        .expect("enqueue");
    other.commit().await.expect("commit");

    first.commit().await.expect("commit");
    let second_id = second.await.expect("second");

    let seq = |id: uuid::Uuid| {
        let (pool, table) = (pool.clone(), config.table.quoted());
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT seq FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("seq")
        }
    };
    let (a, b, c) = (
        seq(first_id).await,
        seq(other_id).await,
        seq(second_id).await,
    );
    assert!(
        a < b && b < c,
        "first {a}, other {b}, second {c}: the second took its position after the first committed"
    );
}

#[tokio::test]
async fn a_relay_against_a_database_without_the_migration_says_which_migration_to_run() {
    let pool = common::pool().await;
    let config = PgOutboxConfig {
        table: TableName::new("public", "outbox_never_migrated").expect("name"),
        ..PgOutboxConfig::default()
    };
    let store = PgStore::new(pool.clone(), config.clone());
    let error = store.check_schema().await.expect_err("no table");
    assert!(matches!(error, Error::MissingMigration { .. }), "{error:?}");
    assert!(
        error.to_string().contains("outbox_postgres::migrate"),
        "{error}"
    );

    let relay = Relay::new(store, MemoryTransport::new(), RelayConfig::default());
    let result = tokio::time::timeout(Duration::from_secs(10), relay.run(Default::default()))
        .await
        .expect("the relay stops instead of retrying for ever");
    match result {
        Err(RelayError::Store(StoreError::MissingMigration { hint })) => {
            assert!(hint.contains("0001_outbox.sql"), "{hint}")
        }
        other => panic!("expected a missing-migration error, got {other:?}"),
    }
}

fn quick_retries() -> RelayConfig {
    RelayConfig {
        max_attempts: 3,
        retry: RetryPolicy {
            initial: Duration::from_millis(300),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..RelayConfig::default()
    }
}

#[tokio::test]
async fn a_failed_event_holds_back_only_the_later_events_of_its_key() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "key_block").await;
    let outbox = common::outbox(&config);
    let transport = MemoryTransport::new();
    transport.reject_key("store.events", "k", 1, "broker said no");
    let relay = Relay::new(
        PgStore::new(pool.clone(), config.clone()),
        transport.clone(),
        quick_retries(),
    );

    let mut tx = pool.begin().await.expect("begin");
    for e in [step("k", 1), step("l", 1), step("k", 2), step("l", 2)] {
        outbox.enqueue(&mut tx, &e).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");

    let pass = relay.run_once().await.expect("pass");
    assert_eq!(
        (pass.published, pass.retried, pass.released),
        (2, 1, 1),
        "{pass:?}"
    );
    let sent: Vec<(String, u64)> = transport
        .published()
        .iter()
        .map(|m| (m.key.clone(), m.payload["n"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(
        sent,
        vec![("l".into(), 1), ("l".into(), 2)],
        "other keys flow"
    );
    let error: Option<String> = sqlx::query_scalar(&format!(
        "SELECT last_error FROM {} WHERE event_key = 'k' ORDER BY seq LIMIT 1",
        config.table.quoted()
    ))
    .fetch_one(&pool)
    .await
    .expect("last_error");
    assert!(error.unwrap_or_default().contains("broker said no"));

    // Before the retry is due, k's later event is not claimable either.
    let pass = relay.run_once().await.expect("pass");
    assert_eq!(pass.claimed, 0, "{pass:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    relay.run_once().await.expect("pass");
    let k: Vec<u64> = transport
        .published()
        .iter()
        .filter(|m| m.key == "k")
        .map(|m| m.payload["n"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        k,
        vec![1, 2],
        "k's events go out in order once the first is delivered"
    );
    assert_eq!(
        count(&pool, &config, "true").await,
        0,
        "published rows are deleted"
    );
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_dead_lettered_with_its_error_and_can_be_replayed() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "dead_letter").await;
    let outbox = common::outbox(&config);
    let transport = MemoryTransport::new();
    transport.reject_key("store.events", "k", 3, "message too large");
    let store = PgStore::new(pool.clone(), config.clone());
    let relay = Relay::new(store.clone(), transport.clone(), quick_retries());

    let mut tx = pool.begin().await.expect("begin");
    let first = outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    outbox
        .enqueue(&mut tx, &step("k", 2))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    for _ in 0..3 {
        relay.run_once().await.expect("pass");
        tokio::time::sleep(Duration::from_millis(1_300)).await;
    }
    relay.run_once().await.expect("pass");
    let (status, attempts, error): (String, i32, Option<String>) = sqlx::query_as(&format!(
        "SELECT status, retry_count, last_error FROM {} WHERE id = $1",
        config.table.quoted()
    ))
    .bind(first)
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(status, "dead");
    assert_eq!(attempts, 3);
    assert!(error.unwrap_or_default().contains("message too large"));
    let k: Vec<u64> = transport
        .published()
        .iter()
        .map(|m| m.payload["n"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        k,
        vec![2],
        "the key moves on after the dead-letter decision"
    );
    assert_eq!(relay.stats().dead_lettered, 1);

    let dead = store.dead_letters(10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id, dead[0].key.as_str(), dead[0].attempts),
        (first, "k", 3)
    );
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("message too large"));

    // Replay puts it back; it is delivered.
    assert_eq!(
        store
            .replay(ReplaySelector::Ids(vec![first]))
            .await
            .expect("replay"),
        vec![first]
    );
    assert!(store.dead_letters(10).await.expect("list").is_empty());
    relay.run_once().await.expect("pass");
    let k: Vec<u64> = transport
        .published()
        .iter()
        .map(|m| m.payload["n"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(k, vec![2, 1]);
}

#[tokio::test]
async fn marks_from_a_relay_that_lost_its_lease_are_refused_and_reported() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "lease_lost").await;
    let outbox = common::outbox(&config);
    let store = PgStore::new(pool.clone(), config.clone());
    let mut tx = pool.begin().await.expect("begin");
    let id = outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let (slow, fast) = (LeaseOwner::random(), LeaseOwner::random());
    let claimed = store
        .claim_batch(slow, 10, Duration::from_millis(200))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].attempts, 1,
        "the attempt is counted when it starts"
    );
    assert!(
        store
            .claim_batch(fast, 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = store
        .claim_batch(fast, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1, "an expired lease is taken over");
    assert_eq!(taken[0].attempts, 2);

    let report = store
        .complete(
            slow,
            &Completion {
                published: vec![id],
                ..Completion::default()
            },
        )
        .await
        .expect("complete");
    assert_eq!(
        report.lease_lost,
        vec![id],
        "the old owner's mark is refused"
    );
    assert!(store
        .extend_lease(slow, &[id], Duration::from_secs(5))
        .await
        .expect("extend")
        .is_empty());
    let report = store
        .complete(
            fast,
            &Completion {
                published: vec![id],
                ..Completion::default()
            },
        )
        .await
        .expect("complete");
    assert!(report.lease_lost.is_empty());
    assert_eq!(count(&pool, &config, "true").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_event_wakes_an_idle_relay_long_before_its_poll_interval() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "wakeup").await;
    let outbox = common::outbox(&config);
    let transport = MemoryTransport::new();
    let relay = Relay::new(
        PgStore::new(pool.clone(), config.clone()),
        transport.clone(),
        RelayConfig {
            poll_interval: Duration::from_secs(30),
            ..RelayConfig::default()
        },
    );
    let shutdown = outbox_core::CancellationToken::new();
    let token = shutdown.clone();
    let running = tokio::spawn(async move { relay.run(token).await });
    // Let the relay find nothing and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut tx = pool.begin().await.expect("begin");
    outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let committed = std::time::Instant::now();
    while transport.published().is_empty() {
        assert!(
            committed.elapsed() < Duration::from_secs(5),
            "the relay was not woken by the commit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    running.await.expect("task").expect("relay");
}

/// The claim must not stall on a plan PostgreSQL cached while the table was empty (a relay claims at every
/// wake-up, so its first claims usually see an empty outbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_planned_on_an_empty_table_stays_fast_on_a_large_one() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "plan_cache").await;
    let store = PgStore::new(pool.clone(), config.clone());
    let owner = LeaseOwner::random();
    for _ in 0..12 {
        assert!(store
            .claim_batch(owner, 500, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty());
    }
    sqlx::query(&format!(
        "INSERT INTO {} (id, topic, event_key, aggregate_type, aggregate_id, event_type, payload) \
         SELECT gen_random_uuid(), 'store.events', 'k' || (i % 7000), 'a', 'k' || (i % 7000), 'e', '{{}}' \
         FROM generate_series(1, 40000) AS i",
        config.table.quoted()
    ))
    .execute(&pool)
    .await
    .expect("fill");
    for _ in 0..3 {
        // A claim of 500 takes well under a second here; with a generic plan made on the empty table it took
        // seconds at half this size, and minutes with larger backlogs.
        let claimed = tokio::time::timeout(
            Duration::from_secs(5),
            store.claim_batch(owner, 500, Duration::from_secs(30)),
        )
        .await
        .expect("the claim finishes instead of stalling on a plan made for an empty table")
        .expect("claim");
        assert_eq!(claimed.len(), 500);
    }
}

#[tokio::test]
async fn an_outbox_in_a_schema_of_its_own_is_created_and_used() {
    let pool = common::pool().await;
    sqlx::raw_sql("DROP SCHEMA IF EXISTS billing_test CASCADE")
        .execute(&pool)
        .await
        .expect("drop schema");
    let config = PgOutboxConfig {
        table: TableName::new("billing_test", "outbox").expect("name"),
        ..PgOutboxConfig::default()
    };
    outbox_postgres::migrate_with(&pool, &config)
        .await
        .expect("the migration creates the schema too");
    let outbox = common::outbox(&config);
    let mut tx = pool.begin().await.expect("begin");
    let id = outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let store = PgStore::new(pool.clone(), config);
    store.check_schema().await.expect("schema in place");
    let claimed = store
        .claim_batch(LeaseOwner::random(), 10, Duration::from_secs(5))
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
    let indexes: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = 'billing_test' AND tablename = 'outbox'")
        .fetch_one(&pool)
        .await
        .expect("indexes");
    assert_eq!(indexes, 5, "the primary key and the four partial indexes");
}

/// A transaction that takes its position early and commits late must not be overtaken by a later event of its
/// key that committed after it (the key lock orders them), whatever the relay claimed in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_not_overtaken_by_a_later_event_of_its_key() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "late_commit_key").await;
    let outbox = common::outbox(&config);
    let store = PgStore::new(pool.clone(), config.clone());
    let owner = LeaseOwner::random();

    let mut t1 = pool.begin().await.expect("begin");
    let k1 = outbox
        .enqueue(&mut t1, &step("k", 1))
        .await
        .expect("enqueue");
    let mut other = pool.begin().await.expect("begin");
    outbox
        .enqueue(&mut other, &step("j", 1))
        .await
        .expect("enqueue");
    other.commit().await.expect("commit");
    let first = store
        .claim_batch(owner, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1, "only j is visible");
    t1.commit().await.expect("commit");
    let mut t2 = pool.begin().await.expect("begin");
    let k2 = outbox
        .enqueue(&mut t2, &step("k", 2))
        .await
        .expect("enqueue");
    t2.commit().await.expect("commit");

    let next = store
        .claim_batch(owner, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    let ids: Vec<uuid::Uuid> = next.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![k1, k2], "k's events in commit order");
}

/// A dead letter replayed by another process goes out before the later events of its key.
#[tokio::test]
async fn a_replay_from_another_process_is_not_overtaken_by_a_later_event_of_its_key() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "replay_elsewhere").await;
    let outbox = common::outbox(&config);
    let transport = MemoryTransport::new();
    transport.reject_key("store.events", "k", 1, "refused");
    let relay = Relay::new(
        PgStore::new(pool.clone(), config.clone()),
        transport.clone(),
        RelayConfig {
            max_attempts: 1,
            ..RelayConfig::default()
        },
    );
    let mut tx = pool.begin().await.expect("begin");
    let k1 = outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    outbox
        .enqueue(&mut tx, &step("j", 1))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    relay.run_once().await.expect("pass");
    let admin = PgStore::new(pool.clone(), config.clone());
    assert_eq!(admin.dead_letters(10).await.expect("list").len(), 1);
    assert_eq!(
        admin
            .replay(ReplaySelector::Key {
                topic: "store.events".into(),
                key: "k".into()
            })
            .await
            .expect("replay"),
        vec![k1]
    );
    let mut tx = pool.begin().await.expect("begin");
    outbox
        .enqueue(&mut tx, &step("k", 2))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    relay.run_once().await.expect("pass");
    let k: Vec<u64> = transport
        .published_to("store.events")
        .iter()
        .filter(|m| m.key == "k")
        .map(|m| m.payload["n"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(k, vec![1, 2], "the replayed event first");
}

/// A dead letter replayed while a later event of its key is in flight waits for it: one key never has two
/// events in flight, whichever comes first in the outbox.
#[tokio::test]
async fn a_replay_waits_while_a_later_event_of_its_key_is_in_flight() {
    let pool = common::pool().await;
    let config = common::fresh_outbox(&pool, "replay_in_flight").await;
    let outbox = common::outbox(&config);
    let store = PgStore::new(pool.clone(), config.clone());
    let mut tx = pool.begin().await.expect("begin");
    let k1 = outbox
        .enqueue(&mut tx, &step("k", 1))
        .await
        .expect("enqueue");
    let k2 = outbox
        .enqueue(&mut tx, &step("k", 2))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    // k1 is dead-lettered; k2 is then claimed by a relay that is still publishing it.
    let (dead_owner, busy_owner) = (LeaseOwner::random(), LeaseOwner::random());
    let first = store
        .claim_batch(dead_owner, 1, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(first[0].id, k1);
    store
        .complete(
            dead_owner,
            &Completion {
                dead_letters: vec![DeadLetter {
                    id: k1,
                    error: "refused".into(),
                }],
                ..Completion::default()
            },
        )
        .await
        .expect("dead-letter");
    let in_flight = store
        .claim_batch(busy_owner, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(in_flight.iter().map(|e| e.id).collect::<Vec<_>>(), vec![k2]);

    store
        .replay(ReplaySelector::Ids(vec![k1]))
        .await
        .expect("replay");
    let while_busy = store
        .claim_batch(LeaseOwner::random(), 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert!(
        while_busy.is_empty(),
        "the replayed event must wait for its key's event in flight: {while_busy:?}"
    );

    store
        .complete(
            busy_owner,
            &Completion {
                published: vec![k2],
                ..Completion::default()
            },
        )
        .await
        .expect("mark");
    let after = store
        .claim_batch(LeaseOwner::random(), 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![k1]);
}
