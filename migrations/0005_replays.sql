-- The audit trail of `cronstream replay` (streams/replay.py): who replayed what, how,
-- and with what result. A row is inserted when a replay starts, its counters are
-- updated after each batch, and its status is set when it ends.
CREATE TABLE replays (
    id             bigserial   PRIMARY KEY,
    started_by     text        NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    mode           text        NOT NULL CHECK (mode IN ('re-apply', 'rebuild')),
    consumer       text        NOT NULL,
    schema         text,
    topic          text        NOT NULL,
    partitions     integer[]   NOT NULL,
    -- What was asked, the resolved offsets per partition and, once it ends, where
    -- each partition stopped.
    range          jsonb       NOT NULL,
    handlers       text[]      NOT NULL,
    status         text        NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    records        bigint      NOT NULL DEFAULT 0,
    applied        bigint      NOT NULL DEFAULT 0,
    duplicates     bigint      NOT NULL DEFAULT 0,
    dead_lettered  bigint      NOT NULL DEFAULT 0,
    error          text,
    CHECK ((mode = 'rebuild') = (schema IS NOT NULL))
);
CREATE INDEX replays_started_at ON replays (started_at DESC);
