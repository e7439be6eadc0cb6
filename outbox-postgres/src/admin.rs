//! Operating the outbox table: counts by status and topic, dead-letter inspection, replay, and purging old
//! published rows. The `outbox` command-line tool (feature `cli`) is a thin layer over these methods.
//!
//! Every age is measured by the database clock. A replay runs in one transaction (all or nothing); a purge
//! deletes in short batches, each its own transaction, and only rows that qualify, so an interrupted purge is
//! simply run again.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::error::Error;
use crate::sql::DeadSelection;
use crate::store::{secs, DeadEvent, PgStore, ReplaySelector};

/// The longest `published_before` a purge subtracts from `now()`: 5000 years (PostgreSQL's timestamps start in
/// 4713 BC); longer ones are clamped to it.
const MAX_PURGE_AGE_SECS: f64 = 5000.0 * 365.25 * 86_400.0;

/// Rows a replay updates per statement; progress is reported after each.
const REPLAY_CHUNK: usize = 1000;

/// Counts of the outbox table by status, per topic and in total, as [`PgStore::status`] reads them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutboxStatus {
    /// One entry per topic that has rows, by topic name.
    pub topics: Vec<TopicStatus>,
    /// Events waiting to be published (including those in flight or waiting for a retry).
    pub pending: u64,
    /// Published events still in the table (only with `keep_published`; otherwise they are deleted at once).
    pub published: u64,
    /// Dead-lettered events.
    pub dead: u64,
    /// How long the oldest pending event has waited since it was enqueued; `None` when nothing is pending.
    pub oldest_pending_age: Option<Duration>,
}

/// The counts of one topic, part of [`OutboxStatus`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopicStatus {
    /// The topic.
    pub topic: String,
    /// Events waiting to be published.
    pub pending: u64,
    /// Published events still in the table.
    pub published: u64,
    /// Dead-lettered events.
    pub dead: u64,
    /// How long the topic's oldest pending event has waited; `None` when nothing is pending.
    pub oldest_pending_age: Option<Duration>,
}

/// Everything stored about one dead-lettered event, as [`PgStore::dead_letter`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadEventDetail {
    /// The event id.
    pub id: Uuid,
    /// Its outbox position.
    pub seq: i64,
    /// Its topic.
    pub topic: String,
    /// Its key.
    pub key: String,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its event type.
    pub event_type: String,
    /// Its payload schema version, when declared.
    pub version: Option<u32>,
    /// The payload, as JSON text.
    pub payload: String,
    /// Extra headers stored with the event.
    pub headers: Vec<(String, String)>,
    /// Publish attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// How long ago it was enqueued.
    pub age: Duration,
    /// How long ago it was dead-lettered.
    pub dead_for: Duration,
}

impl PgStore {
    /// Counts the table's events by topic and status, with the age of the oldest pending event. Reads the
    /// whole table once: meant for operators and monitoring, not for every request.
    ///
    /// ```no_run
    /// # async fn demo(store: outbox_postgres::PgStore) -> Result<(), outbox_postgres::Error> {
    /// let status = store.status().await?;
    /// for topic in &status.topics {
    ///     println!("{}: {} pending, {} dead", topic.topic, topic.pending, topic.dead);
    /// }
    /// if let Some(age) = status.oldest_pending_age {
    ///     println!("oldest pending event waits since {age:?}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise.
    pub async fn status(&self) -> Result<OutboxStatus, Error> {
        let rows = sqlx::query(&self.outbox.queries().status)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let topics = rows
            .iter()
            .map(|row| -> Result<TopicStatus, sqlx::Error> {
                Ok(TopicStatus {
                    topic: row.try_get("topic")?,
                    pending: count(row, "pending")?,
                    published: count(row, "published")?,
                    dead: count(row, "dead")?,
                    oldest_pending_age: row
                        .try_get::<Option<f64>, _>("oldest_pending_secs")?
                        .map(secs),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Database)?;
        Ok(OutboxStatus {
            pending: topics.iter().map(|t| t.pending).sum(),
            published: topics.iter().map(|t| t.published).sum(),
            dead: topics.iter().map(|t| t.dead).sum(),
            oldest_pending_age: topics.iter().filter_map(|t| t.oldest_pending_age).max(),
            topics,
        })
    }

    /// The oldest `limit` dead-lettered events of one topic, in outbox order (all topics:
    /// [`dead_letters`](Self::dead_letters)).
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise.
    pub async fn dead_letters_in_topic(
        &self,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<DeadEvent>, Error> {
        let rows = sqlx::query(&self.outbox.queries().list_dead_in_topic)
            .bind(topic)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        dead_events(&rows)
    }

    /// One dead-lettered event with everything stored about it (payload, headers, error), or `None` when no
    /// dead letter has this id (unknown, or pending or published).
    ///
    /// ```no_run
    /// # async fn demo(store: outbox_postgres::PgStore, id: uuid::Uuid) -> Result<(), outbox_postgres::Error> {
    /// if let Some(dead) = store.dead_letter(id).await? {
    ///     println!("{} failed {} times: {:?}\n{}", dead.id, dead.attempts, dead.last_error, dead.payload);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise.
    pub async fn dead_letter(&self, id: Uuid) -> Result<Option<DeadEventDetail>, Error> {
        let row = sqlx::query(&self.outbox.queries().show_dead)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|row| -> Result<DeadEventDetail, sqlx::Error> {
            let headers: String = row.try_get("headers")?;
            Ok(DeadEventDetail {
                id: row.try_get("id")?,
                seq: row.try_get("seq")?,
                topic: row.try_get("topic")?,
                key: row.try_get("event_key")?,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                event_type: row.try_get("event_type")?,
                version: row
                    .try_get::<Option<i32>, _>("event_version")?
                    .map(|v| v.max(0) as u32),
                payload: row.try_get("payload")?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                attempts: row.try_get::<i32, _>("retry_count")?.max(0) as u32,
                last_error: row.try_get("last_error")?,
                age: secs(row.try_get::<Option<f64>, _>("age_secs")?.unwrap_or(0.0)),
                dead_for: secs(
                    row.try_get::<Option<f64>, _>("dead_for_secs")?
                        .unwrap_or(0.0),
                ),
            })
        })
        .transpose()
        .map_err(Error::Database)
    }

    /// The dead-lettered events a [`replay`](Self::replay) with `selector` would put back, in outbox order;
    /// changes nothing (a dry run).
    ///
    /// # Errors
    /// [`Error::NotDeadLetters`] when [`ReplaySelector::Ids`] names events that are not dead letters, as the
    /// replay itself would; [`Error::MissingMigration`] when the table is missing; [`Error::Database`]
    /// otherwise.
    pub async fn replay_preview(&self, selector: &ReplaySelector) -> Result<Vec<DeadEvent>, Error> {
        let rows = bind_selector(&self.outbox.queries().select_dead, selector)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let events = dead_events(&rows)?;
        check_all_dead(selector, events.iter().map(|e| e.id))?;
        Ok(events)
    }

    /// Like [`replay`](Self::replay), reporting progress: `progress(done, total)` is called once with
    /// `done = 0` when the selection is known and locked, then after every chunk of 1,000 events. All chunks
    /// run in one transaction: when anything fails, or the future is dropped half-way, nothing changed.
    ///
    /// ```no_run
    /// # async fn demo(store: outbox_postgres::PgStore) -> Result<(), outbox_postgres::Error> {
    /// use outbox_postgres::ReplaySelector;
    /// let selector = ReplaySelector::EventType("order.placed.v1".into());
    /// let replayed = store
    ///     .replay_with_progress(&selector, |done, total| eprintln!("{done}/{total}"))
    ///     .await?;
    /// println!("{} events replayed", replayed.len());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotDeadLetters`] when [`ReplaySelector::Ids`] names events that are not dead letters;
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise. Nothing changed.
    pub async fn replay_with_progress(
        &self,
        selector: &ReplaySelector,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<Vec<Uuid>, Error> {
        let q = self.outbox.queries();
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let rows = bind_selector(&q.lock_dead, selector)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<Uuid, _>("id"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Database)?;
        // Dropping the transaction on an error rolls it back.
        check_all_dead(selector, ids.iter().copied())?;
        let total = ids.len() as u64;
        progress(0, total);
        let mut replayed = HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(REPLAY_CHUNK) {
            let done: Vec<Uuid> = sqlx::query_scalar(&q.replay)
                .bind(chunk)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
            replayed.extend(done);
            progress(replayed.len() as u64, total);
        }
        if !replayed.is_empty() {
            if let Some(wake) = &q.wake_relays {
                sqlx::query(wake)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.commit().await.map_err(|e| self.error(e))?;
        // In outbox order; the rows were locked, so every selected event was replayed.
        Ok(ids.into_iter().filter(|id| replayed.contains(id)).collect())
    }

    /// How many published rows a [`purge_published`](Self::purge_published) with `published_before` would
    /// delete now (a dry run).
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise.
    pub async fn count_purgeable(&self, published_before: Duration) -> Result<u64, Error> {
        let cutoff = self.purge_cutoff(published_before).await?;
        self.count_published_before(&cutoff).await
    }

    /// Deletes published rows whose `published_at` is at least `published_before` ago (database clock, fixed
    /// when the purge starts), `batch` rows per statement, each statement its own transaction; returns how
    /// many it deleted. `progress(deleted, total)` is called once with `deleted = 0` and then after every
    /// batch. Rows locked by someone else (a relay's retention cleanup) are skipped, not waited for. An
    /// interrupted purge has deleted only rows that qualified; run it again to finish.
    ///
    /// Only tables with `keep_published` have published rows; the relay's `retention` setting does the same
    /// continuously.
    ///
    /// ```no_run
    /// # async fn demo(store: outbox_postgres::PgStore) -> Result<(), outbox_postgres::Error> {
    /// use std::time::Duration;
    /// let week = Duration::from_secs(7 * 24 * 3600);
    /// let deleted = store.purge_published(week, 1000, |_, _| {}).await?;
    /// println!("{deleted} published rows deleted");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when the table is missing; [`Error::Database`] otherwise (batches deleted
    /// before the failure stay deleted).
    pub async fn purge_published(
        &self,
        published_before: Duration,
        batch: usize,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<u64, Error> {
        let cutoff = self.purge_cutoff(published_before).await?;
        let mut total = self.count_published_before(&cutoff).await?;
        progress(0, total);
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut deleted = 0;
        loop {
            let n = sqlx::query(&self.outbox.queries().purge_published)
                .bind(&cutoff)
                .bind(limit)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(e))?
                .rows_affected();
            if n == 0 {
                break;
            }
            deleted += n;
            // Rows published before the cutoff may commit after the count (a slow relay's mark).
            total = total.max(deleted);
            progress(deleted, total);
        }
        Ok(deleted)
    }

    async fn purge_cutoff(&self, published_before: Duration) -> Result<String, Error> {
        // `now() - interval` fails with "timestamp out of range" before 4713 BC; nothing was published
        // that long ago, so a longer duration means the same as the longest one PostgreSQL can subtract.
        let seconds = published_before.as_secs_f64().min(MAX_PURGE_AGE_SECS);
        sqlx::query_scalar(&self.outbox.queries().purge_cutoff)
            .bind(seconds)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn count_published_before(&self, cutoff: &str) -> Result<u64, Error> {
        let n: i64 = sqlx::query_scalar(&self.outbox.queries().count_purgeable)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(n.max(0) as u64)
    }

    fn error(&self, error: sqlx::Error) -> Error {
        Error::from_sqlx(error, &self.outbox.config().table)
    }
}

/// The selection statement of `selector`, with its parameters bound.
fn bind_selector<'q>(
    sql: &'q DeadSelection,
    selector: &'q ReplaySelector,
) -> Query<'q, Postgres, PgArguments> {
    match selector {
        ReplaySelector::Ids(ids) => sqlx::query(&sql.ids).bind(ids.as_slice()),
        ReplaySelector::Key { topic, key } => sqlx::query(&sql.key).bind(topic).bind(key),
        ReplaySelector::EventType(event_type) => sqlx::query(&sql.event_type).bind(event_type),
        ReplaySelector::All => sqlx::query(&sql.all),
    }
}

/// For a selection by id, every requested id must be a dead letter: a replay is all or nothing.
fn check_all_dead(
    selector: &ReplaySelector,
    found: impl Iterator<Item = Uuid>,
) -> Result<(), Error> {
    let ReplaySelector::Ids(requested) = selector else {
        return Ok(());
    };
    let found: HashSet<Uuid> = found.collect();
    let mut seen = HashSet::new();
    let missing: Vec<Uuid> = requested
        .iter()
        .copied()
        .filter(|id| !found.contains(id) && seen.insert(*id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotDeadLetters { ids: missing })
    }
}

fn dead_events(rows: &[PgRow]) -> Result<Vec<DeadEvent>, Error> {
    rows.iter()
        .map(dead_event)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::Database)
}

/// A [`DeadEvent`] from a row with the columns of `sql::DEAD_EVENT_COLUMNS`.
pub(crate) fn dead_event(row: &PgRow) -> Result<DeadEvent, sqlx::Error> {
    Ok(DeadEvent {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        topic: row.try_get("topic")?,
        key: row.try_get("event_key")?,
        event_type: row.try_get("event_type")?,
        aggregate_type: row.try_get("aggregate_type")?,
        attempts: row.try_get::<i32, _>("retry_count")?.max(0) as u32,
        last_error: row.try_get("last_error")?,
        dead_for: secs(
            row.try_get::<Option<f64>, _>("dead_for_secs")?
                .unwrap_or(0.0),
        ),
    })
}

/// A `count(*)` column as a count.
pub(crate) fn count(row: &PgRow, column: &str) -> Result<u64, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
}
