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
    /// The outbox table exists but lacks columns this version uses (made by another tool or an older
    /// schema): `migrate` only creates what is missing, so compare it with the shipped migration.
    #[error("the outbox table {table} lacks columns this version uses: compare it with outbox-postgres/migrations/0001_outbox.sql (migrating creates missing tables, it does not change existing ones)")]
    OutdatedTable {
        /// The table that was looked at.
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

/// The first ten ids, and how many more.
fn join_ids(ids: &[uuid::Uuid]) -> String {
    const SHOWN: usize = 10;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

impl Error {
    pub(crate) fn from_sqlx(error: sqlx::Error, table: &crate::TableName) -> Self {
        match schema_problem(&error) {
            Some(SchemaProblem::MissingTable) => Error::MissingMigration {
                table: table.quoted(),
            },
            Some(SchemaProblem::MissingColumn) => Error::OutdatedTable {
                table: table.quoted(),
            },
            None => Error::Database(error),
        }
    }
}

/// Undefined table or column: the migration was not applied.
pub(crate) fn is_missing_schema(error: &sqlx::Error) -> bool {
    schema_problem(error).is_some()
}

pub(crate) enum SchemaProblem {
    MissingTable,
    MissingColumn,
}

pub(crate) fn schema_problem(error: &sqlx::Error) -> Option<SchemaProblem> {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("42P01") => Some(SchemaProblem::MissingTable),
            Some("42703") => Some(SchemaProblem::MissingColumn),
            _ => None,
        },
        _ => None,
    }
}
