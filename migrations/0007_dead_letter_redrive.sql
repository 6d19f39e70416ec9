-- Dead letters an operator can act on (`cronstream dlq`, streams/dlq/): a dead letter
-- is resolved when a redrive applied it, in the transaction of its effects, so a
-- second redrive skips it; one that fails again keeps its row with the new reason and
-- the time it failed again. `dlq_redrives` records each real redrive.
ALTER TABLE dead_letters
    ADD COLUMN failed_at   timestamptz,  -- failed again (a redrive, a re-apply replay)
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by bigint;       -- the dlq_redrives row that applied it

CREATE INDEX dead_letters_unresolved ON dead_letters (topic, error) WHERE resolved_at IS NULL;

CREATE TABLE dlq_redrives (
    id            bigserial   PRIMARY KEY,
    started_by    text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    consumer      text        NOT NULL,
    filters       jsonb       NOT NULL,  -- topic, reason, since, until, offsets as asked
    status        text        NOT NULL DEFAULT 'running'
                              CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    selected      bigint      NOT NULL DEFAULT 0,  -- unresolved dead letters matching
    applied       bigint      NOT NULL DEFAULT 0,  -- applied, and so resolved
    failed_again  bigint      NOT NULL DEFAULT 0,  -- dead-lettered again, with their new reason
    skipped       bigint      NOT NULL DEFAULT 0,  -- resolved meanwhile (another redrive)
    missing       bigint      NOT NULL DEFAULT 0,  -- no copy found in the dead-letter topic
    unreadable    bigint      NOT NULL DEFAULT 0,  -- records of the topic without our headers
    error         text
);
ALTER TABLE dead_letters
    ADD CONSTRAINT dead_letters_resolved_by FOREIGN KEY (resolved_by) REFERENCES dlq_redrives (id);
