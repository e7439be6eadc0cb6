//! Errors of the PostgreSQL backend.

/// An error from the PostgreSQL outbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event could not be encoded; nothing was written and the transaction is still usable.
    #[error(transparent)]
    Encode(#[from] outbox_core::EncodeError),
    /// A configured schema or table name is not a plain identifier.
    #[error("{0:?} is not a plain SQL identifier (lowercase ASCII letters, digits and `_`, not starting with a digit, at most 48 bytes)")]
    InvalidIdentifier(String),
    /// The outbox table is missing: run the migration.
    #[error("the outbox table {table} is missing or out of date: run outbox_postgres::migrate(&pool) (or apply outbox-postgres/migrations/0001_outbox.sql)")]
    MissingMigration {
        /// The table that was looked for.
        table: String,
    },
    /// The inbox table is missing: run the inbox migration.
    #[error("the inbox table {table} is missing or out of date: run outbox_postgres::migrate_inbox(&pool) (or apply outbox-postgres/migrations/0002_inbox.sql)")]
    MissingInboxMigration {
        /// The table that was looked for.
        table: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A replay by id named events that are not dead letters (unknown, pending or published); nothing was
    /// replayed.
    #[error(
        "nothing was replayed: {} {} (unknown, pending or published)",
        join_ids(ids),
        if ids.len() == 1 { "is not a dead letter" } else { "are not dead letters" }
    )]
    NotDeadLetters {
        /// The ids that are not dead letters.
        ids: Vec<uuid::Uuid>,
    },
}

fn join_ids(ids: &[uuid::Uuid]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub(crate) fn from_sqlx(error: sqlx::Error, table: &crate::TableName) -> Self {
        if is_missing_schema(&error) {
            Error::MissingMigration {
                table: table.quoted(),
            }
        } else {
            Error::Database(error)
        }
    }
}

/// Undefined table or column: the migration was not applied.
pub(crate) fn is_missing_schema(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01") | Some("42703")))
}
