-- outbox schema v1 for "public"."outbox"
CREATE SCHEMA IF NOT EXISTS "public";
CREATE TABLE IF NOT EXISTS "public"."outbox" (
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
ALTER TABLE "public"."outbox" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                         autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02);
COMMENT ON COLUMN "public"."outbox".seq IS 'outbox position; for one key, the order its transactions committed';
COMMENT ON COLUMN "public"."outbox".retry_count IS 'publish attempts made, counted when an attempt starts';
COMMENT ON COLUMN "public"."outbox".lease_until IS 'claimed until (with lease_owner), or waiting for a retry until (without): the key is blocked until then';
-- The claim walks pending rows in outbox order...
CREATE UNIQUE INDEX IF NOT EXISTS "outbox_pending_seq" ON "public"."outbox" (seq) WHERE status = 'pending';
-- ...skipping keys with a row in flight or waiting for a retry: the few pending rows with a lease_until.
CREATE INDEX IF NOT EXISTS "outbox_leased" ON "public"."outbox" (lease_until) WHERE status = 'pending' AND lease_until IS NOT NULL;
-- Retention cleanup and dead-letter listings.
CREATE INDEX IF NOT EXISTS "outbox_published_at" ON "public"."outbox" (published_at) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS "outbox_dead" ON "public"."outbox" (seq) WHERE status = 'dead';
