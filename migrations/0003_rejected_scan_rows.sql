-- Source rows a scan job could not turn into an event (schedulers/scanner.py): one row
-- per (job, source row), updated in place when a later run meets the same row again,
-- so a row that stays bad never grows this table.
CREATE TABLE scan_rejected_rows (
    job           text        NOT NULL,
    -- Which source row: its key as text in flag and watermark mode ('' for a NULL or
    -- empty key), the outbox id in outbox mode. Escaped and capped like `key`.
    source_row    text        NOT NULL,
    key           text,        -- the row's key as text, escaped and capped; NULL if NULL
    reason        text        NOT NULL,
    mode          text        NOT NULL,
    source_table  text        NOT NULL,
    times_seen    bigint      NOT NULL DEFAULT 1,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, source_row)
);

-- How many rows a run rejected, beside rows_emitted.
ALTER TABLE cron_runs ADD COLUMN rows_rejected integer NOT NULL DEFAULT 0;
