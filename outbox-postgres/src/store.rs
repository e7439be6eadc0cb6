//! The relay's side of the table: claim, lease, complete, clean up.

use std::time::Duration;

use async_trait::async_trait;
use outbox_core::{
    ClaimedEvent, Completion, CompletionReport, LeaseOwner, Store, StoreError, TopicBacklog,
};
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::enqueue::PgOutbox;
use crate::error::{is_missing_schema, Error};
use crate::listen::spawn_listener;
use crate::PgOutboxConfig;

/// The PostgreSQL [`Store`] for a [`Relay`](outbox_core::Relay).
///
/// Every time it uses (leases, retry delays, retention) is measured by the database's `now()`, never by the
/// host's clock.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) outbox: PgOutbox,
}

impl PgStore {
    /// A store on `pool` for the table and settings in `config`.
    pub fn new(pool: PgPool, config: PgOutboxConfig) -> Self {
        PgStore {
            pool,
            outbox: PgOutbox::new(config),
        }
    }

    /// Checks that the table exists with every column the relay uses.
    ///
    /// # Errors
    /// [`Error::MissingMigration`] naming the migration to run; [`Error::Database`] otherwise.
    pub async fn check_schema(&self) -> Result<(), Error> {
        sqlx::query(&self.outbox.queries().check_schema)
            .execute(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(e, &self.outbox.config().table))?;
        Ok(())
    }

    /// The outbox this store reads (its settings and enqueue).
    pub fn outbox(&self) -> &PgOutbox {
        &self.outbox
    }

    /// Puts dead-lettered events back in their key's order (they keep their position) with a fresh attempt
    /// count, in one transaction; returns the ids that were dead and are now pending, in outbox order.
    /// [`replay_with_progress`](Self::replay_with_progress) reports progress on large selections, and
    /// [`replay_preview`](Self::replay_preview) lists what a replay would change.
    ///
    /// ```no_run
    /// # async fn demo(store: outbox_postgres::PgStore) -> Result<(), outbox_postgres::Error> {
    /// use outbox_postgres::ReplaySelector;
    /// for dead in store.dead_letters(100).await? {
    ///     println!("{} {}/{}: {}", dead.id, dead.topic, dead.key, dead.last_error.unwrap_or_default());
    /// }
    /// store.replay(ReplaySelector::Key { topic: "orders".into(), key: "42".into() }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotDeadLetters`] when [`ReplaySelector::Ids`] names an event that is not dead (unknown, pending
    /// or published); [`Error::Database`] when the database fails. Either way nothing changed.
    pub async fn replay(&self, selector: ReplaySelector) -> Result<Vec<Uuid>, Error> {
        self.replay_with_progress(&selector, |_, _| {}).await
    }

    /// The oldest `limit` dead-lettered events, in outbox order.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadEvent>, Error> {
        let rows = sqlx::query(&self.outbox.queries().list_dead)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(e, &self.outbox.config().table))?;
        rows.iter()
            .map(crate::admin::dead_event)
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Error::Database)
    }

    fn store_error(&self, error: sqlx::Error) -> StoreError {
        if is_missing_schema(&error) {
            StoreError::MissingMigration {
                hint: Error::from_sqlx(error, &self.outbox.config().table).to_string(),
            }
        } else {
            StoreError::Backend(Box::new(error))
        }
    }

    async fn owned_ids(
        &self,
        sql: &str,
        owner: LeaseOwner,
        ids: &[Uuid],
    ) -> Result<Vec<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(sql)
            .bind(owner.0)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.store_error(e))
    }
}

/// Which dead-lettered events [`PgStore::replay`] puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaySelector {
    /// These events.
    Ids(Vec<Uuid>),
    /// Every dead event of one key.
    Key {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
    },
    /// Every dead event.
    All,
    /// Every dead event of one event type.
    EventType(String),
}

/// A dead-lettered event, as [`PgStore::dead_letters`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadEvent {
    /// The event id.
    pub id: Uuid,
    /// Its outbox position.
    pub seq: i64,
    /// Its topic.
    pub topic: String,
    /// Its key.
    pub key: String,
    /// Its event type.
    pub event_type: String,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// How long ago it was dead-lettered (database clock).
    pub dead_for: Duration,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A database-measured age in seconds as a duration; a negative one (clock adjustments) counts as zero, one too
/// large for a duration as the largest.
pub(crate) fn secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

#[async_trait]
impl Store for PgStore {
    async fn claim_batch(
        &self,
        owner: LeaseOwner,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let q = self.outbox.queries();
        let mut tx = self.pool.begin().await.map_err(|e| self.store_error(e))?;
        sqlx::query(&q.claim_lock)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.store_error(e))?;
        // Not a named prepared statement: PostgreSQL would switch it to a generic plan after a few executions,
        // and a generic plan made while the outbox was empty can take minutes on a full one. Planning each
        // claim with its real parameters costs about a millisecond.
        let rows = sqlx::query(&q.claim)
            .persistent(false)
            .bind(owner.0)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(seconds(lease))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.store_error(e))?;
        tx.commit().await.map_err(|e| self.store_error(e))?;
        let mut events = rows
            .into_iter()
            .map(|row| -> Result<ClaimedEvent, sqlx::Error> {
                let headers: String = row.try_get("headers")?;
                Ok(ClaimedEvent {
                    id: row.try_get("id")?,
                    seq: row.try_get("seq")?,
                    topic: row.try_get("topic")?,
                    key: row.try_get("event_key")?,
                    event_type: row.try_get("event_type")?,
                    aggregate_type: row.try_get("aggregate_type")?,
                    version: row
                        .try_get::<Option<i32>, _>("event_version")?
                        .map(|v| v as u32),
                    payload: row.try_get("payload")?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    attempts: row.try_get::<i32, _>("retry_count")?.max(0) as u32,
                    last_error: row.try_get("last_error")?,
                    age: secs(row.try_get("age_secs")?),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.store_error(e))?;
        events.sort_unstable_by_key(|e| e.seq);
        Ok(events)
    }

    async fn extend_lease(
        &self,
        owner: LeaseOwner,
        ids: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(&self.outbox.queries().extend_lease)
            .bind(owner.0)
            .bind(ids)
            .bind(seconds(lease))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.store_error(e))
    }

    async fn complete(
        &self,
        owner: LeaseOwner,
        completion: &Completion,
    ) -> Result<CompletionReport, StoreError> {
        let q = self.outbox.queries();
        let mut requested: Vec<Uuid> = Vec::new();
        let mut done: Vec<Uuid> = Vec::new();

        requested.extend(&completion.published);
        done.extend(
            self.owned_ids(&q.mark_published, owner, &completion.published)
                .await?,
        );

        if !completion.retries.is_empty() {
            let ids: Vec<Uuid> = completion.retries.iter().map(|r| r.id).collect();
            let delays: Vec<f64> = completion
                .retries
                .iter()
                .map(|r| seconds(r.delay))
                .collect();
            let errors: Vec<&str> = completion
                .retries
                .iter()
                .map(|r| r.error.as_str())
                .collect();
            let counted: Vec<bool> = completion.retries.iter().map(|r| r.counted).collect();
            requested.extend(&ids);
            let rows: Vec<Uuid> = sqlx::query_scalar(&q.schedule_retry)
                .bind(owner.0)
                .bind(&ids)
                .bind(&delays)
                .bind(&errors)
                .bind(&counted)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.store_error(e))?;
            done.extend(rows);
        }

        if !completion.dead_letters.is_empty() {
            let ids: Vec<Uuid> = completion.dead_letters.iter().map(|d| d.id).collect();
            let errors: Vec<&str> = completion
                .dead_letters
                .iter()
                .map(|d| d.error.as_str())
                .collect();
            requested.extend(&ids);
            let rows: Vec<Uuid> = sqlx::query_scalar(&q.dead_letter)
                .bind(owner.0)
                .bind(&ids)
                .bind(&errors)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.store_error(e))?;
            done.extend(rows);
        }

        requested.extend(&completion.released);
        done.extend(
            self.owned_ids(&q.release, owner, &completion.released)
                .await?,
        );

        let done: std::collections::HashSet<Uuid> = done.into_iter().collect();
        Ok(CompletionReport {
            lease_lost: requested
                .into_iter()
                .filter(|id| !done.contains(id))
                .collect(),
        })
    }

    async fn wakeups(&self, metric_labels: &[(String, String)]) -> Option<watch::Receiver<u64>> {
        if !self.outbox.config().notify {
            return None;
        }
        Some(spawn_listener(
            self.pool.clone(),
            self.outbox.config().channel(),
            metric_labels,
        ))
    }

    async fn backlog(&self) -> Result<Option<Vec<TopicBacklog>>, StoreError> {
        let rows = sqlx::query(&self.outbox.queries().backlog)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.store_error(e))?;
        rows.into_iter()
            .map(|row| -> Result<TopicBacklog, sqlx::Error> {
                Ok(TopicBacklog {
                    topic: row.try_get("topic")?,
                    pending: crate::admin::count(&row, "pending")?,
                    dead: crate::admin::count(&row, "dead")?,
                    oldest_pending_age: row.try_get::<Option<f64>, _>("oldest_secs")?.map(secs),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| self.store_error(e))
    }

    async fn delete_published(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(&self.outbox.queries().delete_published)
            .bind(seconds(older_than))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(result.rows_affected())
    }
}
