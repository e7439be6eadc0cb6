-- inbox schema v1 for "public"."inbox"
CREATE SCHEMA IF NOT EXISTS "public";
CREATE TABLE IF NOT EXISTS "public"."inbox" (
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
COMMENT ON COLUMN "public"."inbox".event_id IS 'the event-id header, or for a message without one a stable id of its topic, partition and offset';
COMMENT ON COLUMN "public"."inbox".payload IS 'kept for parked messages only, for an operator to inspect or replay';
-- Retention cleanup walks old processed records; parked ones stay until an operator removes them.
CREATE INDEX IF NOT EXISTS "inbox_processed_at" ON "public"."inbox" (recorded_at) WHERE status = 'processed';
CREATE INDEX IF NOT EXISTS "inbox_parked" ON "public"."inbox" (recorded_at) WHERE status = 'parked';
