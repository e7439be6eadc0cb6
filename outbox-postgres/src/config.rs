//! Where the outbox and inbox tables live and how enqueue behaves.

use crate::error::Error;

/// A validated `schema.table` name. Only plain identifiers are accepted (lowercase ASCII letters, digits and `_`,
/// not starting with a digit, at most 48 bytes, so that the index names derived from it stay distinct), so a name
/// is never pasted into SQL unchecked; it is quoted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: String,
    table: String,
}

impl TableName {
    /// A table name in a schema.
    ///
    /// # Errors
    /// [`Error::InvalidIdentifier`] when either part is not a plain identifier.
    pub fn new(schema: &str, table: &str) -> Result<Self, Error> {
        check_identifier(schema)?;
        check_identifier(table)?;
        Ok(TableName {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."table"`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.table)
    }

    /// A stable 30-bit number for this table, used to namespace its advisory locks and its channel.
    pub(crate) fn tag(&self) -> i32 {
        (fnv1a([self.schema.as_bytes(), b".", self.table.as_bytes()]) & 0x3fff_ffff) as i32
    }
}

impl Default for TableName {
    fn default() -> Self {
        TableName {
            schema: "public".into(),
            table: "outbox".into(),
        }
    }
}

/// FNV-1a over the concatenated parts: stable across builds, platforms and processes (std's hashers are not),
/// so every enqueuer of one table agrees on it.
pub(crate) fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in part {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The advisory-lock key of an event key: transactions enqueueing the same `(topic, key)` take the same lock.
pub(crate) fn key_lock(topic: &str, key: &str) -> i32 {
    fnv1a([topic.as_bytes(), b"\x1f", key.as_bytes()]) as i32
}

/// The longest schema or table name accepted.
pub(crate) const MAX_IDENTIFIER: usize = 48;

fn check_identifier(name: &str) -> Result<(), Error> {
    // Lowercase only and at most 48 bytes: index names are derived from the table's name, and must neither
    // fold together (`Outbox` and `outbox`) nor be truncated to the same 63-byte name.
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidIdentifier(name.to_owned()))
    }
}

/// Settings of the PostgreSQL outbox, shared by enqueue ([`PgOutbox`](crate::PgOutbox)) and the relay's store
/// ([`PgStore`](crate::PgStore)).
#[derive(Debug, Clone)]
pub struct PgOutboxConfig {
    /// The outbox table. Default `public.outbox`.
    pub table: TableName,
    /// Send a wake-up notification (no payload, one per transaction) when an event is enqueued, so relays
    /// pick it up at once. Costs a short database-wide lock at commit; turn it off for very high commit rates
    /// and rely on polling. Default on.
    pub notify: bool,
    /// Keep published rows (status `published`, with `published_at`) instead of deleting them when the broker
    /// acknowledges them; the relay's `retention` setting then deletes them later. Default off: deleting at
    /// once keeps the table small and the claim fast.
    pub keep_published: bool,
}

impl Default for PgOutboxConfig {
    fn default() -> Self {
        PgOutboxConfig {
            table: TableName::default(),
            notify: true,
            keep_published: false,
        }
    }
}

impl PgOutboxConfig {
    /// The LISTEN/NOTIFY channel of this table.
    pub fn channel(&self) -> String {
        format!("outbox_{:08x}", self.table.tag())
    }
}

/// Settings of the PostgreSQL inbox ([`PgInbox`](crate::PgInbox)).
#[derive(Debug, Clone)]
pub struct PgInboxConfig {
    /// The inbox table. Default `public.inbox`.
    pub table: TableName,
}

impl Default for PgInboxConfig {
    fn default() -> Self {
        PgInboxConfig {
            table: TableName {
                schema: "public".into(),
                table: "inbox".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_accepted() {
        assert!(TableName::new("public", "outbox").is_ok());
        assert!(TableName::new("app_1", "_events").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "a;drop table x",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(
                    TableName::new("public", bad),
                    Err(Error::InvalidIdentifier(_))
                ),
                "{bad:?} must be refused"
            );
            assert!(TableName::new(bad, "outbox").is_err());
        }
    }

    #[test]
    fn names_are_quoted_and_tags_are_stable() {
        let t = TableName::new("app", "outbox").unwrap();
        assert_eq!(t.quoted(), "\"app\".\"outbox\"");
        assert_eq!(t.tag(), TableName::new("app", "outbox").unwrap().tag());
        assert_ne!(t.tag(), TableName::default().tag());
    }
}
