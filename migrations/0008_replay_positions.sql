-- Where each replay got to (handlers/applier.py, streams/replay/): per partition, the
-- last offset of the batches it applied, written in the same transaction as each batch.
-- A batch retried after a lost COMMIT acknowledgement, and a replay resumed after it
-- was stopped or killed (`cronstream replay --resume ID`), go on from the offset after
-- it, so the replay applies no record twice.
CREATE TABLE replay_positions (
    replay_id   bigint      NOT NULL REFERENCES replays (id) ON DELETE CASCADE,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replay_id, topic, partition)
);

-- The last time a replay was resumed, and by whom (started_by, started_at: the first run).
ALTER TABLE replays ADD COLUMN resumed_at timestamptz, ADD COLUMN resumed_by text;
