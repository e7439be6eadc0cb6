//! Every SQL statement of the outbox and the inbox, rendered once for a configured table. The table name is a validated,
//! quoted identifier; all values are bind parameters.

use crate::config::{PgInboxConfig, PgOutboxConfig};

/// The schema, as shipped in `migrations/0001_outbox.sql` for the default table (a test keeps the two equal).
/// `{table}` is the quoted table name, `{name}` its bare name for index names.
const MIGRATION: &str = r#"-- outbox schema v1 for {table}
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    id             uuid        PRIMARY KEY,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    topic          text        NOT NULL,
    event_key      text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    event_version  integer,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '[]',
    status         text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'dead')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    available_at   timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    retry_count    integer     NOT NULL DEFAULT 0,
    last_error     text,
    lease_owner    uuid,
    lease_until    timestamptz,
    dead_at        timestamptz
);
-- A queue table: rows are inserted, updated and deleted all the time; vacuum it early so dead rows do not pile up.
ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                         autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02);
COMMENT ON COLUMN {table}.seq IS 'outbox position; for one key, the order its transactions committed';
COMMENT ON COLUMN {table}.retry_count IS 'publish attempts made, counted when an attempt starts';
COMMENT ON COLUMN {table}.lease_until IS 'claimed until (with lease_owner), or waiting for a retry until (without): the key is blocked until then';
-- The claim walks pending rows in outbox order...
CREATE UNIQUE INDEX IF NOT EXISTS "{name}_pending_seq" ON {table} (seq) WHERE status = 'pending';
-- ...skipping keys with a row in flight or waiting for a retry: the few pending rows with a lease_until.
CREATE INDEX IF NOT EXISTS "{name}_leased" ON {table} (lease_until) WHERE status = 'pending' AND lease_until IS NOT NULL;
-- Retention cleanup and dead-letter listings.
CREATE INDEX IF NOT EXISTS "{name}_published_at" ON {table} (published_at) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS "{name}_dead" ON {table} (seq) WHERE status = 'dead';
"#;

/// The statements for one table.
#[derive(Debug, Clone)]
pub(crate) struct Queries {
    pub migration: String,
    pub check_schema: String,
    pub insert_one: String,
    pub insert_many: String,
    pub claim_lock: String,
    pub claim: String,
    pub extend_lease: String,
    pub mark_published: String,
    pub schedule_retry: String,
    pub dead_letter: String,
    pub release: String,
    pub delete_published: String,
    pub replay: String,
    pub list_dead: String,
    pub backlog: String,
    pub list_dead_in_topic: String,
    pub status: String,
    pub show_dead: String,
    pub select_dead: DeadSelection,
    pub lock_dead: DeadSelection,
    pub purge_cutoff: String,
    pub count_purgeable: String,
    pub purge_published: String,
    pub wake_relays: Option<String>,
}

/// One statement per [`ReplaySelector`](crate::ReplaySelector) variant, each reading dead events in outbox order.
#[derive(Debug, Clone)]
pub(crate) struct DeadSelection {
    /// `$1`: the ids.
    pub ids: String,
    /// `$1`: the topic, `$2`: the key.
    pub key: String,
    /// `$1`: the event type.
    pub event_type: String,
    /// Every dead event.
    pub all: String,
}

impl DeadSelection {
    /// `select` is the column list; `suffix` goes after `ORDER BY seq` (e.g. a row lock).
    fn new(table: &str, select: &str, suffix: &str) -> Self {
        let render = |filter: &str| {
            format!(
                "SELECT {select} FROM {table} WHERE status = 'dead'{filter} ORDER BY seq{suffix}"
            )
        };
        DeadSelection {
            ids: render(" AND id = ANY($1)"),
            key: render(" AND topic = $1 AND event_key = $2"),
            event_type: render(" AND event_type = $1"),
            all: render(""),
        }
    }
}

/// The columns of a [`DeadEvent`](crate::DeadEvent), its age measured by the database clock.
const DEAD_EVENT_COLUMNS: &str =
    "id, seq, topic, event_key, event_type, aggregate_type, retry_count, last_error, \
   extract(epoch FROM now() - dead_at)::float8 AS dead_for_secs";

impl Queries {
    pub fn new(config: &PgOutboxConfig) -> Self {
        let table = config.table.quoted();
        let tag = config.table.tag();
        // Advisory lock namespaces: keys and the claim use different class ids.
        let key_class = tag;
        let claim_class = tag ^ 0x4000_0000;
        let notify = if config.notify {
            format!(", pg_notify('{}', '')", config.channel())
        } else {
            String::new()
        };
        let mark_published = if config.keep_published {
            format!(
                "UPDATE {table} SET status = 'published', published_at = now(), lease_owner = NULL, lease_until = NULL \
                 WHERE id = ANY($2) AND lease_owner = $1 AND status = 'pending' RETURNING id"
            )
        } else {
            format!(
                "DELETE FROM {table} WHERE id = ANY($2) AND lease_owner = $1 AND status = 'pending' RETURNING id"
            )
        };
        Queries {
            migration: MIGRATION
                .replace("{table}", &table)
                .replace("{name}", config.table.table())
                .replace("{schema}", &format!("\"{}\"", config.table.schema())),
            check_schema: format!(
                "SELECT id, seq, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, payload, \
                 headers, status, created_at, available_at, published_at, retry_count, last_error, lease_owner, \
                 lease_until, dead_at FROM {table} LIMIT 0"
            ),
            // Locking the key before the row takes its `seq` (the identity is evaluated after the CTE) makes
            // transactions of one key take their positions in commit order.
            insert_one: format!(
                "WITH key_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({key_class}, $9){notify}) \
                 INSERT INTO {table} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, payload, headers, created_at) \
                 SELECT $1, $2, $3, $4, $3, $5, $6, $7::text::jsonb, $8::text::jsonb, clock_timestamp() FROM key_lock"
            ),
            // $9 holds the batch's distinct key locks, sorted, so two batches sharing keys take them in the same
            // order and cannot deadlock on each other.
            insert_many: format!(
                "WITH key_locks AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock({key_class}, h) \
                   FROM unnest($9::int4[]) WITH ORDINALITY AS l(h, ord) ORDER BY ord) AS locked{notify_many}) \
                 INSERT INTO {table} (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, payload, headers, created_at) \
                 SELECT i.id, i.topic, i.event_key, i.aggregate_type, i.event_key, i.event_type, i.event_version, i.payload::jsonb, i.headers::jsonb, clock_timestamp() \
                 FROM key_locks, unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::text[]) \
                   WITH ORDINALITY AS i(id, topic, event_key, aggregate_type, event_type, event_version, payload, headers, ord) \
                 ORDER BY i.ord",
                notify_many = if config.notify {
                    format!(" CROSS JOIN (SELECT pg_notify('{}', '')) AS wake", config.channel())
                } else {
                    String::new()
                }
            ),
            // Claims are serialized per table so that two relays never take events of one key at once; the
            // claim statement runs after the lock, in the same transaction, so it sees the previous claim.
            claim_lock: format!("SELECT pg_advisory_xact_lock({claim_class}, 0)"),
            // A key is blocked while any of its pending rows is leased or waiting for a retry (both have a
            // `lease_until` in the future): then none of its rows is claimable, so one key never has two events
            // in flight, even when a replayed dead letter sits before a row that is in flight. Otherwise the
            // claimable rows of a key are all its pending rows, and taking the lowest `seq` first keeps every
            // key's claimed part a prefix. The blocked set is small (rows in flight or waiting), read once
            // through its partial index, so the claim costs the same whatever the backlog behind a key.
            claim: format!(
                "WITH blocked AS MATERIALIZED ( \
                   SELECT DISTINCT topic, event_key FROM {table} \
                   WHERE status = 'pending' AND lease_until IS NOT NULL AND lease_until > now()), \
                 candidates AS ( \
                   SELECT o.id FROM {table} AS o \
                   WHERE o.status = 'pending' AND (o.lease_until IS NULL OR o.lease_until <= now()) \
                     AND NOT EXISTS (SELECT 1 FROM blocked AS b \
                       WHERE b.topic = o.topic AND b.event_key = o.event_key) \
                   ORDER BY o.seq LIMIT $2) \
                 UPDATE {table} AS o SET lease_owner = $1, lease_until = now() + make_interval(secs => $3), \
                   retry_count = o.retry_count + 1 \
                 FROM candidates AS c \
                 WHERE o.id = c.id AND o.status = 'pending' AND (o.lease_until IS NULL OR o.lease_until <= now()) \
                 RETURNING o.id, o.seq, o.topic, o.event_key, o.event_type, o.aggregate_type, o.event_version, \
                   o.payload::text AS payload, o.headers::text AS headers, o.retry_count, o.last_error, \
                   extract(epoch FROM clock_timestamp() - o.created_at)::float8 AS age_secs"
            ),
            extend_lease: format!(
                "UPDATE {table} SET lease_until = now() + make_interval(secs => $3) \
                 WHERE id = ANY($2) AND lease_owner = $1 AND status = 'pending' RETURNING id"
            ),
            mark_published,
            // Waiting for a retry blocks the key like a lease held by nobody.
            schedule_retry: format!(
                "UPDATE {table} AS o SET lease_owner = NULL, lease_until = now() + make_interval(secs => r.delay), \
                   available_at = now() + make_interval(secs => r.delay), last_error = r.error, \
                   retry_count = CASE WHEN r.counted THEN o.retry_count ELSE greatest(o.retry_count - 1, 0) END \
                 FROM unnest($2::uuid[], $3::float8[], $4::text[], $5::bool[]) AS r(id, delay, error, counted) \
                 WHERE o.id = r.id AND o.lease_owner = $1 AND o.status = 'pending' RETURNING o.id"
            ),
            dead_letter: format!(
                "UPDATE {table} AS o SET status = 'dead', dead_at = now(), lease_owner = NULL, lease_until = NULL, \
                   last_error = d.error \
                 FROM unnest($2::uuid[], $3::text[]) AS d(id, error) \
                 WHERE o.id = d.id AND o.lease_owner = $1 AND o.status = 'pending' RETURNING o.id"
            ),
            release: format!(
                "UPDATE {table} SET lease_owner = NULL, lease_until = NULL, retry_count = greatest(retry_count - 1, 0) \
                 WHERE id = ANY($2) AND lease_owner = $1 AND status = 'pending' RETURNING id"
            ),
            delete_published: format!(
                "DELETE FROM {table} WHERE id IN ( \
                   SELECT id FROM {table} WHERE status = 'published' AND published_at <= now() - make_interval(secs => $1) \
                   ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            // A replayed event keeps its `seq`, so it goes back into its key's order.
            replay: format!(
                "UPDATE {table} SET status = 'pending', retry_count = 0, available_at = now(), lease_until = NULL, dead_at = NULL \
                 WHERE id = ANY($1) AND status = 'dead' RETURNING id"
            ),
            list_dead: format!(
                "SELECT id, seq, topic, event_key, event_type, aggregate_type, retry_count, last_error, \
                   extract(epoch FROM now() - dead_at)::float8 AS dead_for_secs \
                 FROM {table} WHERE status = 'dead' ORDER BY seq LIMIT $1"
            ),
            // For the backlog gauges: two partial indexes cover the rows it reads. Written as `OR`, not
            // `IN (..)`: PostgreSQL combines the partial indexes (a BitmapOr) only for an `OR` of the two
            // predicates; with `IN` it scans the whole table, published rows (`keep_published`) included.
            backlog: format!(
                "SELECT topic, count(*) FILTER (WHERE status = 'pending') AS pending, \
                   count(*) FILTER (WHERE status = 'dead') AS dead, \
                   extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::float8 AS oldest_secs \
                 FROM {table} WHERE status = 'pending' OR status = 'dead' GROUP BY topic ORDER BY topic"
            ),
            list_dead_in_topic: format!(
                "SELECT {DEAD_EVENT_COLUMNS} FROM {table} WHERE status = 'dead' AND topic = $1 ORDER BY seq LIMIT $2"
            ),
            // One pass over the table; ages come from the database clock, all measured at one `now()`.
            status: format!(
                "SELECT topic, \
                   count(*) FILTER (WHERE status = 'pending') AS pending, \
                   count(*) FILTER (WHERE status = 'published') AS published, \
                   count(*) FILTER (WHERE status = 'dead') AS dead, \
                   extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::float8 AS oldest_pending_secs \
                 FROM {table} GROUP BY topic ORDER BY topic"
            ),
            show_dead: format!(
                "SELECT id, seq, topic, event_key, aggregate_type, aggregate_id, event_type, event_version, \
                   payload::text AS payload, headers::text AS headers, retry_count, last_error, \
                   extract(epoch FROM now() - created_at)::float8 AS age_secs, \
                   extract(epoch FROM now() - dead_at)::float8 AS dead_for_secs \
                 FROM {table} WHERE id = $1 AND status = 'dead'"
            ),
            select_dead: DeadSelection::new(&table, DEAD_EVENT_COLUMNS, ""),
            // A replay locks what it selected, so the rows it counted are the rows it changes.
            lock_dead: DeadSelection::new(&table, "id", " FOR UPDATE"),
            // The cutoff is fixed once per purge, as text (exact to the microsecond, parsed back by the same
            // database), so a long purge ends and counts what it will delete even while rows keep ageing.
            purge_cutoff: "SELECT (now() - make_interval(secs => $1))::text".to_owned(),
            count_purgeable: format!(
                "SELECT count(*) FROM {table} WHERE status = 'published' AND published_at <= $1::timestamptz"
            ),
            purge_published: format!(
                "DELETE FROM {table} WHERE id IN ( \
                   SELECT id FROM {table} WHERE status = 'published' AND published_at <= $1::timestamptz \
                   ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            // Sent with a replay's commit so idle relays pick the replayed events up at once.
            wake_relays: config
                .notify
                .then(|| format!("SELECT pg_notify('{}', '')", config.channel())),
        }
    }
}

/// The inbox schema, as shipped in `migrations/0002_inbox.sql` for the default table (a test keeps the two
/// equal). `{table}` is the quoted table name, `{name}` its bare name for index names.
const INBOX_MIGRATION: &str = r#"-- inbox schema v1 for {table}
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    event_id       uuid        PRIMARY KEY,
    topic          text        NOT NULL,
    partition_id   integer     NOT NULL,
    message_offset bigint      NOT NULL,
    status         text        NOT NULL DEFAULT 'processed' CHECK (status IN ('processed', 'parked')),
    attempts       integer     NOT NULL DEFAULT 1,
    last_error     text,
    message_key    bytea,
    payload        bytea,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN {table}.event_id IS 'the event-id header, or for a message without one a stable id of its topic, partition and offset';
COMMENT ON COLUMN {table}.payload IS 'kept for parked messages only, for an operator to inspect or replay';
-- Retention cleanup walks old processed records; parked ones stay until an operator removes them.
CREATE INDEX IF NOT EXISTS "{name}_processed_at" ON {table} (recorded_at) WHERE status = 'processed';
CREATE INDEX IF NOT EXISTS "{name}_parked" ON {table} (recorded_at) WHERE status = 'parked';
"#;

/// The statements of one inbox table.
#[derive(Debug, Clone)]
pub(crate) struct InboxQueries {
    pub migration: String,
    pub check_schema: String,
    pub record_processed: String,
    pub park: String,
    pub delete_processed: String,
    pub list_parked: String,
}

impl InboxQueries {
    pub fn new(config: &PgInboxConfig) -> Self {
        let table = config.table.quoted();
        InboxQueries {
            migration: INBOX_MIGRATION
                .replace("{table}", &table)
                .replace("{name}", config.table.table())
                .replace("{schema}", &format!("\"{}\"", config.table.schema())),
            check_schema: format!(
                "SELECT event_id, topic, partition_id, message_offset, status, attempts, last_error, message_key, \
                 payload, recorded_at FROM {table} LIMIT 0"
            ),
            // No row back: the event id was recorded already (by a committed transaction; a concurrent one is
            // waited for on the primary key).
            record_processed: format!(
                "INSERT INTO {table} (event_id, topic, partition_id, message_offset, attempts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            ),
            park: format!(
                "INSERT INTO {table} (event_id, topic, partition_id, message_offset, status, attempts, last_error, message_key, payload) \
                 VALUES ($1, $2, $3, $4, 'parked', $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            ),
            delete_processed: format!(
                "DELETE FROM {table} WHERE event_id IN ( \
                   SELECT event_id FROM {table} WHERE status = 'processed' AND recorded_at <= now() - make_interval(secs => $1) \
                   ORDER BY recorded_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            list_parked: format!(
                "SELECT event_id, topic, partition_id, message_offset, attempts, last_error, message_key, payload \
                 FROM {table} WHERE status = 'parked' ORDER BY recorded_at, topic, partition_id, message_offset LIMIT $1"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_inbox_migration_file_is_the_default_rendering() {
        let shipped = include_str!("../migrations/0002_inbox.sql");
        assert_eq!(
            shipped,
            InboxQueries::new(&PgInboxConfig::default()).migration
        );
    }

    #[test]
    fn the_shipped_migration_file_is_the_default_rendering() {
        let shipped = include_str!("../migrations/0001_outbox.sql");
        assert_eq!(shipped, Queries::new(&PgOutboxConfig::default()).migration);
    }
}
