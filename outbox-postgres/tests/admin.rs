//! `PgStore`'s admin methods against a real PostgreSQL (`DATABASE_URL`): progress reports of replay and purge,
//! and the all-or-nothing replay by id. The `outbox` CLI's tests (`tests/cli.rs`) cover the rest through the
//! binary.
#![allow(missing_docs)]

use std::sync::Mutex;
use std::time::Duration;

use outbox_core::NewMessage;
use outbox_postgres::{Error, PgOutbox, PgOutboxConfig, PgStore, ReplaySelector, TableName};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

async fn store(name: &str) -> (PgPool, PgStore, String) {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: these tests need PostgreSQL. Run scripts/test.sh, or start it with \
             `eval \"$(scripts/services.sh up)\"`"
        )
    });
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("connect to PostgreSQL at DATABASE_URL");
    let config = PgOutboxConfig {
        table: TableName::new("public", &format!("outbox_admin_{name}")).expect("valid table name"),
        notify: false,
        keep_published: true,
    };
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", config.table.quoted()))
        .execute(&pool)
        .await
        .expect("drop old test table");
    outbox_postgres::migrate_with(&pool, &config)
        .await
        .expect("migrate");
    let table = config.table.quoted();
    (pool.clone(), PgStore::new(pool, config), table)
}

async fn enqueue(pool: &PgPool, outbox: &PgOutbox, n: usize) -> Vec<Uuid> {
    let messages: Vec<NewMessage> = (0..n)
        .map(|i| NewMessage {
            id: Uuid::now_v7(),
            topic: "orders".into(),
            key: format!("k{}", i % 7),
            event_type: "order.placed.v1".into(),
            aggregate_type: "order".into(),
            version: None,
            payload: serde_json::value::to_raw_value(&i).expect("payload"),
            headers: Vec::new(),
        })
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    outbox
        .enqueue_messages(&mut tx, &messages)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    messages.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn replay_reports_progress_per_chunk_of_a_thousand_and_returns_ids_in_outbox_order() {
    let (pool, store, table) = store("replay_progress").await;
    let ids = enqueue(&pool, store.outbox(), 2500).await;
    sqlx::raw_sql(&format!(
        "UPDATE {table} SET status = 'dead', dead_at = now(), last_error = 'boom'"
    ))
    .execute(&pool)
    .await
    .expect("make dead");

    let preview = store
        .replay_preview(&ReplaySelector::All)
        .await
        .expect("preview");
    assert_eq!(preview.iter().map(|d| d.id).collect::<Vec<_>>(), ids);

    let reports = Mutex::new(Vec::new());
    let replayed = store
        .replay_with_progress(&ReplaySelector::All, |done, total| {
            reports.lock().unwrap().push((done, total));
        })
        .await
        .expect("replay");
    assert_eq!(replayed, ids);
    assert_eq!(
        reports.into_inner().unwrap(),
        [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]
    );
    assert_eq!(store.status().await.expect("status").pending, 2500);
}

#[tokio::test]
async fn replay_by_id_is_all_or_nothing() {
    let (pool, store, table) = store("replay_strict").await;
    let ids = enqueue(&pool, store.outbox(), 3).await;
    sqlx::query(&format!(
        "UPDATE {table} SET status = 'dead', dead_at = now() WHERE id = ANY($1)"
    ))
    .bind(&ids[..2])
    .execute(&pool)
    .await
    .expect("make dead");
    let unknown = Uuid::now_v7();

    let selector = ReplaySelector::Ids(vec![ids[0], unknown, ids[2], ids[1], unknown]);
    for result in [
        store.replay_preview(&selector).await.map(|_| ()),
        store.replay(selector.clone()).await.map(|_| ()),
    ] {
        match result {
            Err(Error::NotDeadLetters { ids: missing }) => {
                assert_eq!(missing, vec![unknown, ids[2]], "named once each, as given")
            }
            other => panic!("expected NotDeadLetters, got {other:?}"),
        }
    }
    assert_eq!(
        store.status().await.expect("status").dead,
        2,
        "nothing changed"
    );

    let replayed = store
        .replay(ReplaySelector::Ids(vec![ids[1], ids[0], ids[1]]))
        .await
        .expect("replay");
    assert_eq!(replayed, ids[..2]);
}

#[tokio::test]
async fn purge_reports_progress_per_batch_and_deletes_only_rows_past_the_cutoff() {
    let (pool, store, table) = store("purge_progress").await;
    let ids = enqueue(&pool, store.outbox(), 25).await;
    sqlx::query(&format!(
        "UPDATE {table} SET status = 'published', published_at = now() - interval '3 days' WHERE id = ANY($1)"
    ))
    .bind(&ids[..21])
    .execute(&pool)
    .await
    .expect("make old published");
    sqlx::query(&format!(
        "UPDATE {table} SET status = 'published', published_at = now() - interval '1 day' WHERE id = ANY($1)"
    ))
    .bind(&ids[21..23])
    .execute(&pool)
    .await
    .expect("make recent published");
    let two_days = Duration::from_secs(2 * 86_400);

    assert_eq!(store.count_purgeable(two_days).await.expect("count"), 21);
    let reports = Mutex::new(Vec::new());
    let deleted = store
        .purge_published(two_days, 10, |done, total| {
            reports.lock().unwrap().push((done, total));
        })
        .await
        .expect("purge");
    assert_eq!(deleted, 21);
    assert_eq!(
        reports.into_inner().unwrap(),
        [(0, 21), (10, 21), (20, 21), (21, 21)]
    );
    let status = store.status().await.expect("status");
    assert_eq!((status.published, status.pending), (2, 2));
    assert_eq!(
        store
            .purge_published(two_days, 10, |_, _| {})
            .await
            .expect("rerun"),
        0
    );
}

#[tokio::test]
async fn a_purge_duration_longer_than_the_calendar_deletes_nothing_instead_of_failing() {
    let (pool, store, table) = store("purge_huge").await;
    let ids = enqueue(&pool, store.outbox(), 3).await;
    sqlx::query(&format!(
        "UPDATE {table} SET status = 'published', published_at = now() - interval '3 days' WHERE id = ANY($1)"
    ))
    .bind(&ids)
    .execute(&pool)
    .await
    .expect("make published");
    // Used to fail with "timestamp out of range" (now() minus more than the years back to 4713 BC).
    for huge in [
        Duration::from_secs(10_000_000 * 604_800),
        Duration::from_secs(u64::MAX),
    ] {
        assert_eq!(store.count_purgeable(huge).await.expect("count"), 0);
        assert_eq!(
            store
                .purge_published(huge, 10, |_, _| {})
                .await
                .expect("purge"),
            0
        );
    }
    assert_eq!(store.status().await.expect("status").published, 3);
}
