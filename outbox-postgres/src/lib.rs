//! # outbox-postgres
//!
//! The PostgreSQL side of the transactional outbox: [`EnqueueExt::enqueue`] writes an event in your own
//! transaction, [`PgStore`] lets a [`Relay`](outbox_core::Relay) claim and mark events, and [`migrate`] creates
//! the table (the same SQL ships as `migrations/0001_outbox.sql` for other migration tools).
//!
//! On the consuming side, [`PgInbox`] is the [`InboxStore`](outbox_core::inbox::InboxStore) of an idempotent
//! consumer ([`InboxConsumer`](outbox_core::inbox::InboxConsumer)): it records each event id in an inbox table
//! in the same transaction as the handler's writes. [`migrate_inbox`] creates that table
//! (`migrations/0002_inbox.sql`).
//!
//! Operators inspect and repair the table through [`PgStore`]: [`status`](PgStore::status),
//! [`dead_letters`](PgStore::dead_letters), [`dead_letter`](PgStore::dead_letter),
//! [`replay`](PgStore::replay) / [`replay_preview`](PgStore::replay_preview) and
//! [`purge_published`](PgStore::purge_published), or with the `outbox` command-line tool that wraps them
//! (feature `cli`: `cargo install --path outbox-postgres --features cli`).
//!
//! ## How order is kept
//! `enqueue` takes a transaction-scoped advisory lock on the event's `(topic, key)` before the row takes its
//! position (`seq`), so transactions that enqueue events of one key take positions in commit order. A relay
//! claims an event only when no earlier pending event of its key is leased or waiting for a retry. Claims are
//! serialized per table by a short advisory lock, leases are checked on every mark, and all times come from
//! the database clock.
//!
//! ## Delivery semantics
//! At least once: published if and only if the enqueuing transaction commits; sent again (same event id)
//! when a relay dies after the broker acknowledged and before it marked.
#![warn(missing_docs)]

mod admin;
mod config;
mod enqueue;
mod error;
mod inbox;
mod listen;
mod sql;
mod store;

pub use admin::{DeadEventDetail, OutboxStatus, TopicStatus};
pub use config::{PgInboxConfig, PgOutboxConfig, TableName};
pub use enqueue::{EnqueueExt, PgOutbox};
pub use error::Error;
pub use inbox::{ParkedMessage, PgInbox};
pub use store::{DeadEvent, PgStore, ReplaySelector};

/// The outbox core crate, for `#[outbox(crate = "outbox_postgres::core")]` when you depend on this crate only.
pub use outbox_core as core;

/// Creates the default outbox table (`public.outbox`) and its indexes if they do not exist. Safe to run on
/// every start, from several processes at once.
///
/// # Errors
/// [`Error::Database`] when the DDL fails.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), Error> {
    migrate_with(pool, &PgOutboxConfig::default()).await
}

/// Like [`migrate`], for the table in `config`.
///
/// # Errors
/// [`Error::Database`] when the DDL fails.
pub async fn migrate_with(pool: &sqlx::PgPool, config: &PgOutboxConfig) -> Result<(), Error> {
    run_migration(pool, &config.table, &sql::Queries::new(config).migration).await
}

/// Runs one migration's DDL in a transaction, one migrator per table at a time: concurrent
/// `CREATE ... IF NOT EXISTS` statements can still collide.
async fn run_migration(pool: &sqlx::PgPool, table: &TableName, ddl: &str) -> Result<(), Error> {
    let mut tx = pool.begin().await.map_err(Error::Database)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 1)")
        .bind(table.tag() ^ 0x2000_0000)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
    sqlx::raw_sql(ddl)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
    tx.commit().await.map_err(Error::Database)?;
    Ok(())
}

/// Creates the default inbox table (`public.inbox`) and its indexes if they do not exist. Safe to run on every
/// start, from several processes at once. Teams with their own migration tool apply
/// `migrations/0002_inbox.sql` instead.
///
/// # Errors
/// [`Error::Database`] when the DDL fails.
pub async fn migrate_inbox(pool: &sqlx::PgPool) -> Result<(), Error> {
    migrate_inbox_with(pool, &PgInboxConfig::default()).await
}

/// Like [`migrate_inbox`], for the table in `config`.
///
/// # Errors
/// [`Error::Database`] when the DDL fails.
pub async fn migrate_inbox_with(pool: &sqlx::PgPool, config: &PgInboxConfig) -> Result<(), Error> {
    run_migration(
        pool,
        &config.table,
        &sql::InboxQueries::new(config).migration,
    )
    .await
}
