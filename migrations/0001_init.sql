-- The tables of DESIGN.md: checkpoints, cron jobs and runs, scan watermarks, the
-- built-in projection and a record of dead-lettered messages.

-- Per (consumer group, topic, partition): the last Kafka offset whose effects are
-- committed. Written in the same transaction as those effects.
CREATE TABLE checkpoints (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    "offset"    bigint      NOT NULL CHECK ("offset" >= -1),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Jobs defined in the database; the scheduler picks up changes without a restart.
CREATE TABLE cron_jobs (
    name            text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.\-]+$'),
    schedule        text        NOT NULL,
    timezone        text        NOT NULL DEFAULT 'UTC',
    kind            text        NOT NULL DEFAULT 'scan',
    config          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    misfire_policy  text        NOT NULL DEFAULT 'once'
                                CHECK (misfire_policy IN ('skip', 'once', 'all')),
    misfire_grace   interval    NOT NULL DEFAULT interval '60 seconds',
    max_catchup     integer     NOT NULL DEFAULT 10 CHECK (max_catchup >= 1),
    jitter          interval    NOT NULL DEFAULT interval '0',
    enabled         boolean     NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per tick. UNIQUE (job, scheduled_for) makes a tick impossible to run twice,
-- even when two schedulers believe they lead for a moment.
CREATE TABLE cron_runs (
    id             text        PRIMARY KEY,
    job            text        NOT NULL,
    scheduled_for  timestamptz NOT NULL,
    status         text        NOT NULL
                               CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at     timestamptz,
    finished_at    timestamptz,
    rows_emitted   integer     NOT NULL DEFAULT 0,
    error          text,
    node           text        NOT NULL,
    UNIQUE (job, scheduled_for)
);
CREATE INDEX cron_runs_job_recent ON cron_runs (job, scheduled_for DESC);

-- Where a watermark-mode scan has reached, per job.
CREATE TABLE scan_watermarks (
    job         text PRIMARY KEY,
    position    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The built-in projection: the newest known state of each (entity, key).
CREATE TABLE entity_projection (
    entity       text        NOT NULL,
    key          text        NOT NULL,
    version      bigint,
    occurred_at  timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    event_id     text        NOT NULL,
    source       text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, key)
);

-- Messages sent to a dead-letter topic, for `cronstream status` and audits.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    dlq_topic   text        NOT NULL,
    error       text        NOT NULL,
    attempts    integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, partition, "offset")
);
