-- `cronstream replay` (streams/replay.py): its audit row and the rebuild schema.

-- replay_start --
INSERT INTO replays (started_by, mode, consumer, schema, topic, partitions, range, handlers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id

-- replay_progress --
UPDATE replays
SET records = $2, applied = $3, duplicates = $4, dead_lettered = $5
WHERE id = $1

-- replay_finish --
UPDATE replays
SET finished_at = now(), status = $2, records = $3, applied = $4, duplicates = $5,
    dead_lettered = $6, error = $7, range = range || jsonb_build_object('stopped', $8::jsonb)
WHERE id = $1

-- replay_checkpoints --
-- A consumer's checkpoints of one topic, read without locking: the plan's snapshot.
SELECT partition, "offset" FROM checkpoints WHERE consumer = $1 AND topic = $2

-- replay_current_schema --
SELECT current_schema()

-- replay_table_exists --
SELECT to_regclass($1) IS NOT NULL

-- replay_search_path --
SELECT current_setting('search_path')

-- replay_set_search_path --
-- Local to the transaction (here: the handler's savepoint, whose rollback undoes it).
SELECT set_config('search_path', $1, true)
