//! The `outbox` command-line tool against a real PostgreSQL (`DATABASE_URL`): every command, human and JSON
//! output, dry runs, exit codes, and bad input that must change nothing. Each test uses a table of its own
//! (`public.outbox_cli_<name>`), so the tests run in parallel.
#![allow(missing_docs)]

use std::process::Command;
use std::time::Duration;

use outbox_core::NewMessage;
use outbox_postgres::{PgOutbox, PgOutboxConfig, TableName};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: these tests need PostgreSQL. Run scripts/test.sh, or start it with \
             `eval \"$(scripts/services.sh up)\"`"
        )
    })
}

async fn pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&database_url())
        .await
        .expect("connect to PostgreSQL at DATABASE_URL")
}

/// A test's own table, `public.outbox_cli_<name>`, dropped and migrated afresh.
struct Fixture {
    pool: PgPool,
    outbox: PgOutbox,
    table: String,
}

async fn fixture(name: &str, keep_published: bool) -> Fixture {
    let pool = pool().await;
    let table = format!("outbox_cli_{name}");
    let config = PgOutboxConfig {
        table: TableName::new("public", &table).expect("valid table name"),
        notify: false,
        keep_published,
    };
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {}", config.table.quoted()))
        .execute(&pool)
        .await
        .expect("drop old test table");
    outbox_postgres::migrate_with(&pool, &config)
        .await
        .expect("migrate");
    Fixture {
        pool,
        outbox: PgOutbox::new(config),
        table: format!("public.{table}"),
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {self:?}"))
    }

    fn assert_ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        assert_eq!(self.stderr, "", "a success prints nothing on stderr");
        &self.stdout
    }

    /// Failed with `code` and one `error: ...` line on stderr, nothing on stdout.
    fn assert_fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(
            self.stdout, "",
            "a failure prints nothing on stdout: {self:?}"
        );
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.lines().count() == 1,
            "one error line: {self:?}"
        );
        &self.stderr
    }
}

fn outbox_cli(args: &[&str]) -> Run {
    run_with_env(args, Some(&database_url()))
}

fn run_with_env(args: &[&str], database_url: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command.args(args);
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let output = command.output().expect("run the outbox binary");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

impl Fixture {
    fn cli(&self, args: &[&str]) -> Run {
        let mut all = vec!["--table", &self.table];
        all.extend_from_slice(args);
        outbox_cli(&all)
    }

    /// Enqueues `n` events of one topic and event type, keys `key-0`, `key-1`, ... (or one key for all).
    async fn enqueue(
        &self,
        topic: &str,
        event_type: &str,
        n: usize,
        key: Option<&str>,
    ) -> Vec<Uuid> {
        let messages: Vec<NewMessage> = (0..n)
            .map(|i| NewMessage {
                id: Uuid::now_v7(),
                topic: topic.into(),
                key: key.map_or_else(|| format!("key-{i}"), str::to_owned),
                event_type: event_type.into(),
                aggregate_type: "order".into(),
                version: Some(2),
                payload: serde_json::value::to_raw_value(&json!({ "n": i, "note": "ünïcode" }))
                    .expect("payload"),
                headers: vec![("trace-id".into(), format!("t{i}"))],
            })
            .collect();
        let mut tx = self.pool.begin().await.expect("begin");
        self.outbox
            .enqueue_messages(&mut tx, &messages)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        messages.iter().map(|m| m.id).collect()
    }

    /// Marks events dead as the relay would after its last attempt.
    async fn make_dead(&self, ids: &[Uuid], error: &str) {
        sqlx::query(&format!(
            "UPDATE {} SET status = 'dead', dead_at = now() - interval '90 seconds', retry_count = 10, \
             last_error = $2 WHERE id = ANY($1)",
            self.table
        ))
        .bind(ids)
        .bind(error)
        .execute(&self.pool)
        .await
        .expect("make dead");
    }

    /// Marks events published `ago` before the database's now.
    async fn make_published(&self, ids: &[Uuid], ago: Duration) {
        sqlx::query(&format!(
            "UPDATE {} SET status = 'published', published_at = now() - make_interval(secs => $2) \
             WHERE id = ANY($1)",
            self.table
        ))
        .bind(ids)
        .bind(ago.as_secs_f64())
        .execute(&self.pool)
        .await
        .expect("make published");
    }

    /// Every row's id, status, attempts and error, in outbox order: to check that nothing changed.
    async fn snapshot(&self) -> Vec<(Uuid, String, i32, Option<String>)> {
        sqlx::query_as(&format!(
            "SELECT id, status, retry_count, last_error FROM {} ORDER BY seq",
            self.table
        ))
        .fetch_all(&self.pool)
        .await
        .expect("snapshot")
    }

    async fn status_of(&self, id: Uuid) -> Option<String> {
        sqlx::query_scalar(&format!("SELECT status FROM {} WHERE id = $1", self.table))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .expect("status of")
    }
}

fn ids_of(doc: &Value, field: &str) -> Vec<Uuid> {
    doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is an array: {doc}"))
        .iter()
        .map(|v| v.as_str().expect("id string").parse().expect("uuid"))
        .collect()
}

#[tokio::test]
async fn status_counts_events_by_topic_and_status_with_the_oldest_pending_age() {
    let f = fixture("status", true).await;
    let orders = f.enqueue("orders", "order.placed.v1", 4, None).await;
    let payments = f.enqueue("payments", "payment.taken.v1", 3, None).await;
    f.make_dead(&orders[3..], "too large").await;
    f.make_published(&payments[..2], Duration::from_secs(60))
        .await;
    sqlx::query(&format!(
        "UPDATE {} SET created_at = now() - interval '5 minutes' WHERE id = $1",
        f.table
    ))
    .bind(orders[0])
    .execute(&f.pool)
    .await
    .expect("age one event");

    let doc = f.cli(&["status", "--json"]).json();
    assert_eq!(doc["table"], f.table);
    assert_eq!(
        (
            doc["pending"].as_u64(),
            doc["published"].as_u64(),
            doc["dead"].as_u64()
        ),
        (Some(4), Some(2), Some(1))
    );
    let oldest = doc["oldest_pending_secs"]
        .as_f64()
        .expect("an oldest pending age");
    assert!(
        (300.0..360.0).contains(&oldest),
        "the database clock says 5 minutes: {oldest}"
    );
    let topics = doc["topics"].as_array().expect("topics");
    assert_eq!(topics.len(), 2);
    assert_eq!(topics[0]["topic"], "orders");
    assert_eq!(
        (topics[0]["pending"].as_u64(), topics[0]["dead"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(topics[1]["topic"], "payments");
    assert_eq!(
        (
            topics[1]["pending"].as_u64(),
            topics[1]["published"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert!(topics[1]["oldest_pending_secs"].as_f64().expect("age") < 60.0);

    let text = f.cli(&["status"]);
    let text = text.assert_ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("outbox table {}", f.table));
    assert!(
        lines[1].starts_with("TOPIC") && lines[1].contains("OLDEST PENDING"),
        "{text}"
    );
    let orders_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(orders_row[..4], ["orders", "3", "0", "1"], "{text}");
    assert!(orders_row[4].starts_with("5m"), "{text}");
    assert!(lines[4].starts_with("total"), "{text}");

    let empty = fixture("status_empty", false).await;
    let doc = empty.cli(&["status", "--json"]).json();
    assert_eq!(doc["pending"], 0);
    assert_eq!(doc["oldest_pending_secs"], Value::Null);
    assert_eq!(doc["topics"], json!([]));
}

#[tokio::test]
async fn dead_list_shows_dead_letters_in_outbox_order_by_topic_and_limited() {
    let f = fixture("dead_list", false).await;
    let orders = f.enqueue("orders", "order.placed.v1", 3, None).await;
    let payments = f.enqueue("payments", "payment.taken.v1", 2, None).await;
    f.make_dead(&orders[..2], "message too large\nsecond line")
        .await;
    f.make_dead(&payments[1..], "unknown topic").await;

    let doc = f.cli(&["dead", "list", "--json"]).json();
    let listed: Vec<&Value> = doc["dead_letters"]
        .as_array()
        .expect("list")
        .iter()
        .collect();
    let ids: Vec<Uuid> = listed
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![orders[0], orders[1], payments[1]],
        "outbox order, dead letters only"
    );
    assert_eq!(listed[0]["topic"], "orders");
    assert_eq!(listed[0]["key"], "key-0");
    assert_eq!(listed[0]["event_type"], "order.placed.v1");
    assert_eq!(listed[0]["attempts"], 10);
    assert_eq!(listed[0]["last_error"], "message too large\nsecond line");
    assert!(listed[0]["dead_for_secs"].as_f64().unwrap() >= 90.0);

    let doc = f
        .cli(&["dead", "list", "--topic", "payments", "--json"])
        .json();
    assert_eq!(doc["dead_letters"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["dead_letters"][0]["id"], payments[1].to_string());

    let limited = f.cli(&["dead", "list", "--limit", "1"]);
    let text = limited.assert_ok();
    assert!(
        text.contains(&orders[0].to_string()) && !text.contains(&orders[1].to_string()),
        "{text}"
    );
    assert!(text.contains("there may be more"), "{text}");

    let all = f.cli(&["dead", "list"]);
    let text = all.assert_ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and one line per dead letter: {text}"
    );
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST ERROR"),
        "{text}"
    );
    assert!(
        lines[1].contains("message too large second line"),
        "errors on one line: {text}"
    );
    assert!(lines[1].contains("1m3"), "dead for 90 s: {text}");

    let none = f.cli(&["dead", "list", "--topic", "nothing-here"]);
    assert_eq!(
        none.assert_ok(),
        format!("no dead letters in {}\n", f.table)
    );
}

#[tokio::test]
async fn dead_show_prints_everything_stored_about_a_dead_letter() {
    let f = fixture("dead_show", false).await;
    let ids = f.enqueue("orders", "order.placed.v1", 2, Some("k1")).await;
    f.make_dead(&ids[1..], "broker refused: record too large")
        .await;
    f.make_dead(&ids[..1], "delivery failed\ncaused by: broker down")
        .await;
    let id = ids[1].to_string();

    // A multi-line error stays inside its field.
    let first = f.cli(&["dead", "show", &ids[0].to_string()]);
    assert!(
        first
            .assert_ok()
            .contains("last error: delivery failed\n            caused by: broker down\nheaders:"),
        "{}",
        first.stdout
    );

    let doc = f.cli(&["dead", "show", &id, "--json"]).json();
    assert_eq!(doc["id"], id);
    assert_eq!(doc["topic"], "orders");
    assert_eq!(doc["key"], "k1");
    assert_eq!(doc["aggregate_type"], "order");
    assert_eq!(doc["aggregate_id"], "k1");
    assert_eq!(doc["event_type"], "order.placed.v1");
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["attempts"], 10);
    assert_eq!(doc["last_error"], "broker refused: record too large");
    assert_eq!(doc["payload"], json!({ "n": 1, "note": "ünïcode" }));
    assert_eq!(doc["headers"], json!([["trace-id", "t1"]]));
    assert!(doc["age_secs"].as_f64().unwrap() >= 0.0);
    assert!(doc["dead_for_secs"].as_f64().unwrap() >= 90.0);

    let text = f.cli(&["dead", "show", &id]);
    let text = text.assert_ok();
    for expected in [
        format!("id:         {id}"),
        "event type: order.placed.v1 (version 2)".to_owned(),
        "last error: broker refused: record too large".to_owned(),
        "headers:    trace-id=t1".to_owned(),
        "  \"note\": \"ünïcode\"".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
}

#[tokio::test]
async fn dead_show_of_an_id_that_is_not_a_dead_letter_exits_3() {
    let f = fixture("dead_show_missing", false).await;
    let pending = f.enqueue("orders", "order.placed.v1", 1, None).await;
    let unknown = Uuid::now_v7();
    for id in [unknown, pending[0]] {
        let run = f.cli(&["dead", "show", &id.to_string()]);
        let line = run.assert_fails(3);
        assert!(
            line.contains(&id.to_string()) && line.contains("no dead letter"),
            "{line}"
        );
    }
    let line = f
        .cli(&["dead", "show", "not-a-uuid"])
        .assert_fails(2)
        .to_owned();
    assert!(
        line.contains("not-a-uuid") && line.contains("UUID"),
        "{line}"
    );
}

#[tokio::test]
async fn replay_by_id_puts_dead_letters_back_and_a_dry_run_changes_nothing() {
    let f = fixture("replay_ids", false).await;
    let ids = f.enqueue("orders", "order.placed.v1", 4, Some("k")).await;
    f.make_dead(&ids[1..3], "boom").await;
    let before = f.snapshot().await;
    let (a, b) = (ids[1].to_string(), ids[2].to_string());

    let doc = f
        .cli(&["replay", "--id", &b, &a, "--dry-run", "--json"])
        .json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["count"], 2);
    assert_eq!(ids_of(&doc, "ids"), vec![ids[1], ids[2]], "in outbox order");
    assert_eq!(doc["events"][0]["last_error"], "boom");
    let text = f.cli(&["replay", "--id", &a, "--id", &b, "--dry-run"]);
    let text = text.assert_ok();
    assert!(
        text.starts_with("dry run: would replay 2 dead letters (nothing changed)\n"),
        "{text}"
    );
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    assert_eq!(f.snapshot().await, before, "a dry run changes nothing");

    let doc = f.cli(&["replay", "--id", &a, &b, "--json"]).json();
    assert_eq!(doc, json!({ "dry_run": false, "count": 2, "ids": [a, b] }));
    let after = f.snapshot().await;
    for row in &after[1..3] {
        assert_eq!(
            (row.1.as_str(), row.2),
            ("pending", 0),
            "pending again with a fresh attempt count"
        );
    }
    assert_eq!(after[0], before[0]);
    assert_eq!(after[3], before[3]);

    f.make_dead(&ids[..1], "again").await;
    let text = f.cli(&["replay", "--id", &ids[0].to_string()]);
    assert_eq!(
        text.assert_ok(),
        "replayed 1 dead letter: pending again, in their keys' order\n"
    );
}

#[tokio::test]
async fn replay_by_id_with_ids_that_are_not_dead_letters_names_them_exits_3_and_changes_nothing() {
    let f = fixture("replay_not_dead", true).await;
    let ids = f.enqueue("orders", "order.placed.v1", 3, None).await;
    f.make_dead(&ids[..1], "boom").await;
    f.make_published(&ids[2..], Duration::from_secs(5)).await;
    let before = f.snapshot().await;
    let unknown = Uuid::now_v7();
    let (dead, pending, published) = (ids[0].to_string(), ids[1].to_string(), ids[2].to_string());
    let unknown = unknown.to_string();

    for dry_run in [true, false] {
        let mut args = vec!["replay", "--id", &dead, &unknown, &pending, &published];
        if dry_run {
            args.push("--dry-run");
        }
        let run = f.cli(&args);
        let line = run.assert_fails(3);
        assert!(
            line.starts_with("error: nothing was replayed: ")
                && line.ends_with(" are not dead letters (unknown, pending or published)\n"),
            "{line}"
        );
        for named in [&unknown, &pending, &published] {
            assert!(line.contains(named.as_str()), "{named} is named: {line}");
        }
        assert!(
            !line.contains(&dead),
            "the dead letter is not named: {line}"
        );
        assert_eq!(
            f.snapshot().await,
            before,
            "nothing changed (dry run: {dry_run})"
        );
    }
}

#[tokio::test]
async fn replay_by_key_or_event_type_selects_only_their_dead_letters() {
    let f = fixture("replay_select", false).await;
    let k1 = f.enqueue("orders", "order.placed.v1", 2, Some("k1")).await;
    let k2 = f
        .enqueue("orders", "order.cancelled.v1", 2, Some("k2"))
        .await;
    let other_topic = f.enqueue("refunds", "order.placed.v1", 1, Some("k1")).await;
    let all: Vec<Uuid> = [k1.clone(), k2.clone(), other_topic.clone()].concat();
    f.make_dead(&all, "boom").await;

    let doc = f
        .cli(&["replay", "--key", "orders", "k1", "--dry-run", "--json"])
        .json();
    assert_eq!(ids_of(&doc, "ids"), k1);
    let doc = f.cli(&["replay", "--key", "orders", "k1", "--json"]).json();
    assert_eq!(ids_of(&doc, "ids"), k1);
    assert_eq!(
        f.status_of(other_topic[0]).await.as_deref(),
        Some("dead"),
        "same key, other topic"
    );

    let doc = f
        .cli(&["replay", "--event-type", "order.cancelled.v1", "--json"])
        .json();
    assert_eq!(ids_of(&doc, "ids"), k2);
    assert_eq!(f.status_of(other_topic[0]).await.as_deref(), Some("dead"));

    let doc = f
        .cli(&["replay", "--event-type", "order.cancelled.v1", "--json"])
        .json();
    assert_eq!(doc["count"], 0, "nothing left to replay is not an error");
    let text = f.cli(&["replay", "--key", "orders", "k1"]);
    assert_eq!(
        text.assert_ok(),
        "no dead letters match; nothing replayed\n"
    );
}

#[tokio::test]
async fn replay_all_that_fails_half_way_changes_nothing_and_a_rerun_replays_everything() {
    let f = fixture("replay_all", false).await;
    // More than one chunk of 1,000; the last event fails to update, in the second chunk.
    let mut ids = f.enqueue("orders", "order.placed.v1", 1500, None).await;
    ids.extend(f.enqueue("orders", "poison", 1, None).await);
    f.make_dead(&ids, "boom").await;
    sqlx::raw_sql(&format!(
        "CREATE OR REPLACE FUNCTION outbox_cli_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'poison refused'; END $$; \
         CREATE TRIGGER refuse_poison BEFORE UPDATE ON {table} FOR EACH ROW \
         WHEN (NEW.event_type = 'poison' AND NEW.status = 'pending') EXECUTE FUNCTION outbox_cli_refuse_poison();",
        table = f.table
    ))
    .execute(&f.pool)
    .await
    .expect("install a failing trigger");
    let before = f.snapshot().await;

    let run = f.cli(&["replay", "--all"]);
    let line = run.assert_fails(1);
    assert!(line.contains("poison refused"), "{line}");
    assert_eq!(
        f.snapshot().await,
        before,
        "the first chunk was rolled back too"
    );

    let doc = f.cli(&["replay", "--all", "--dry-run", "--json"]).json();
    assert_eq!(doc["count"], 1501);

    sqlx::raw_sql(&format!(
        "DROP TRIGGER refuse_poison ON {}; DROP FUNCTION outbox_cli_refuse_poison();",
        f.table
    ))
    .execute(&f.pool)
    .await
    .expect("drop the trigger");
    let doc = f.cli(&["replay", "--all", "--json"]).json();
    assert_eq!(doc["count"], 1501);
    assert_eq!(
        ids_of(&doc, "ids"),
        ids,
        "every dead letter, in outbox order"
    );
    assert!(f.snapshot().await.iter().all(|row| row.1 == "pending"));
    let text = f.cli(&["replay", "--all"]);
    assert_eq!(
        text.assert_ok(),
        "no dead letters match; nothing replayed\n"
    );
}

#[tokio::test]
async fn purge_deletes_exactly_the_published_rows_older_than_the_duration() {
    let f = fixture("purge", true).await;
    let old = f.enqueue("orders", "order.placed.v1", 5, None).await;
    let recent = f.enqueue("orders", "order.placed.v1", 2, None).await;
    let pending = f.enqueue("orders", "order.placed.v1", 2, None).await;
    let dead = f.enqueue("orders", "order.placed.v1", 1, None).await;
    f.make_published(&old, Duration::from_secs(2 * 86_400))
        .await;
    f.make_published(&recent, Duration::from_secs(3600)).await;
    f.make_dead(&dead, "boom").await;
    sqlx::query(&format!(
        "UPDATE {} SET created_at = now() - interval '30 days', dead_at = now() - interval '30 days' WHERE id = $1",
        f.table
    ))
    .bind(dead[0])
    .execute(&f.pool)
    .await
    .expect("an old dead letter");
    let before = f.snapshot().await;

    let doc = f
        .cli(&["purge", "--published-before", "1d", "--dry-run", "--json"])
        .json();
    assert_eq!(
        doc,
        json!({ "dry_run": true, "count": 5, "published_before_secs": 86_400.0 })
    );
    let text = f.cli(&["purge", "--published-before", "1d", "--dry-run"]);
    assert_eq!(
        text.assert_ok(),
        "dry run: would delete 5 rows published 1d ago or earlier (nothing changed)\n"
    );
    assert_eq!(f.snapshot().await, before, "a dry run changes nothing");

    let doc = f
        .cli(&[
            "purge",
            "--published-before",
            "1d",
            "--batch",
            "2",
            "--json",
        ])
        .json();
    assert_eq!(doc["count"], 5, "in batches of 2");
    let left: Vec<Uuid> = f.snapshot().await.into_iter().map(|row| row.0).collect();
    assert_eq!(
        left,
        [recent.clone(), pending, dead].concat(),
        "exactly the old published rows are gone"
    );

    let text = f.cli(&["purge", "--published-before", "1d"]);
    assert_eq!(
        text.assert_ok(),
        "deleted 0 rows published 1d ago or earlier\n"
    );
    let text = f.cli(&["purge", "--published-before", "30m"]);
    assert_eq!(
        text.assert_ok(),
        "deleted 2 rows published 30m ago or earlier\n"
    );
    assert_eq!(f.status_of(recent[0]).await, None);
}

#[tokio::test]
async fn a_malformed_duration_is_refused_with_one_line_and_exit_2() {
    let f = fixture("purge_bad", true).await;
    let ids = f.enqueue("orders", "order.placed.v1", 2, None).await;
    f.make_published(&ids, Duration::from_secs(86_400)).await;
    let before = f.snapshot().await;
    for bad in ["7x", "1.5h", "d", "", "-1d"] {
        let run = f.cli(&["purge", &format!("--published-before={bad}")]);
        let line = run.assert_fails(2);
        assert!(line.contains("--published-before"), "{line}");
    }
    let line = f
        .cli(&["purge", "--published-before", "7 days"])
        .assert_fails(2)
        .to_owned();
    assert!(
        line.contains("\"7 days\" is not a duration") && line.contains("e.g. 30s"),
        "{line}"
    );
    f.cli(&["purge", "--published-before", "1h", "--batch", "0"])
        .assert_fails(2);
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn a_missing_table_exits_4_with_one_line_saying_to_run_outbox_migrate() {
    let pool = pool().await;
    sqlx::raw_sql("DROP TABLE IF EXISTS public.outbox_cli_never_migrated")
        .execute(&pool)
        .await
        .expect("drop");
    let id = Uuid::now_v7().to_string();
    let commands: [&[&str]; 7] = [
        &["status"],
        &["status", "--json"],
        &["dead", "list"],
        &["dead", "show", id.as_str()],
        &["replay", "--all"],
        &["replay", "--id", id.as_str(), "--dry-run"],
        &["purge", "--published-before", "7d"],
    ];
    for command in commands {
        let mut args = vec!["--table", "public.outbox_cli_never_migrated"];
        args.extend_from_slice(command);
        let run = outbox_cli(&args);
        let line = run.assert_fails(4);
        assert_eq!(
            line,
            "error: the outbox table public.outbox_cli_never_migrated does not exist: \
             run `outbox migrate --table public.outbox_cli_never_migrated`\n",
            "{command:?}"
        );
    }
}

/// A table made by another tool, without this version's columns: `migrate` cannot fix it, so the error does
/// not suggest it.
#[tokio::test]
async fn a_table_without_the_outbox_columns_exits_4_and_points_at_the_migration_file() {
    let pool = pool().await;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS public.outbox_cli_foreign; CREATE TABLE public.outbox_cli_foreign (id uuid PRIMARY KEY)",
    )
    .execute(&pool)
    .await
    .expect("a foreign table");
    for command in [&["status"][..], &["dead", "list"], &["replay", "--all"]] {
        let mut args = vec!["--table", "public.outbox_cli_foreign"];
        args.extend_from_slice(command);
        let run = outbox_cli(&args);
        let line = run.assert_fails(4);
        assert!(
            line.starts_with(
                "error: the outbox table public.outbox_cli_foreign lacks columns this version uses"
            ) && line.contains("migrations/0001_outbox.sql")
                && !line.contains("run `outbox migrate"),
            "{command:?}: {line}"
        );
    }
}

#[tokio::test]
async fn migrate_creates_the_outbox_table_or_with_inbox_the_inbox_table() {
    let pool = pool().await;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS public.outbox_cli_migrate; DROP TABLE IF EXISTS public.outbox_cli_migrate_inbox",
    )
    .execute(&pool)
    .await
    .expect("drop");
    let table = ["--table", "public.outbox_cli_migrate"];

    outbox_cli(&[&table[..], &["status"]].concat()).assert_fails(4);
    let run = outbox_cli(&[&table[..], &["migrate"]].concat());
    assert_eq!(
        run.assert_ok(),
        "outbox table public.outbox_cli_migrate is up to date\n"
    );
    let doc = outbox_cli(&[&table[..], &["migrate", "--json"]].concat()).json();
    assert_eq!(
        doc,
        json!({ "kind": "outbox", "table": "public.outbox_cli_migrate" })
    );
    assert_eq!(
        outbox_cli(&[&table[..], &["status", "--json"]].concat()).json()["pending"],
        0
    );

    let run = outbox_cli(&[
        "migrate",
        "--inbox",
        "--inbox-table",
        "outbox_cli_migrate_inbox",
    ]);
    assert_eq!(
        run.assert_ok(),
        "inbox table public.outbox_cli_migrate_inbox is up to date\n"
    );
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public.outbox_cli_migrate_inbox') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("look for the inbox table");
    assert!(exists);
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for (args, expected) in [
        (vec!["replay"], "required arguments were not provided"),
        (
            vec!["replay", "--all", "--event-type", "x"],
            "cannot be used with",
        ),
        (vec!["replay", "--id", "123"], "is not an event id"),
        (
            vec!["--table", "Public.Outbox", "status"],
            "not a plain SQL identifier",
        ),
        (
            vec!["--table", "a.b.c", "status"],
            "not a plain SQL identifier",
        ),
        (vec!["stats"], "unrecognized subcommand"),
        (vec![], "requires a subcommand"),
        (vec!["migrate", "--inbox-table", "x"], "--inbox"),
    ] {
        let run = outbox_cli(&args);
        let line = run.assert_fails(2);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    let run = run_with_env(&["status"], None);
    assert_eq!(
        run.assert_fails(2),
        "error: no database URL: pass --database-url or set DATABASE_URL\n"
    );
    run_with_env(&["--database-url", "not a url", "status"], None).assert_fails(2);
    let empty = run_with_env(&["status"], Some(""));
    assert_eq!(
        empty.assert_fails(2),
        "error: no database URL: pass --database-url or set DATABASE_URL\n",
        "an empty DATABASE_URL is no URL"
    );
}

#[test]
fn a_database_that_cannot_be_reached_exits_1_with_one_line() {
    let run = run_with_env(
        &[
            "--database-url",
            "postgres://postgres@127.0.0.1:1/outbox",
            "status",
        ],
        None,
    );
    assert!(run
        .assert_fails(1)
        .starts_with("error: cannot connect to the database: "));
}

#[test]
fn help_documents_the_commands_and_exit_codes() {
    let run = outbox_cli(&["--help"]);
    let text = run.assert_ok();
    for expected in [
        "status",
        "dead",
        "replay",
        "purge",
        "migrate",
        "Exit codes:",
        "  4  the outbox table is missing",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert!(
        !text.contains(&database_url()),
        "the database URL (a secret) is not shown"
    );
}
