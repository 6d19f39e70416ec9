-- `cronstream replay` (streams/replay.py): its audit row and the rebuild schema.

-- replay_start --
INSERT INTO replays (started_by, mode, consumer, schema, topic, partitions, range, handlers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id

-- replay_hold --
-- Held by the session of the replay with id $1 while it runs, so another session can
-- tell a running replay from a row left 'running' by a process that died (its session
-- ended and the lock with it). A two-key lock, shown in pg_locks with objsubid 2.
SELECT pg_advisory_lock(hashtext('cronstream.replay'), ($1::bigint & 2147483647)::integer)

-- replay_try_hold --
-- replay_hold's lock if free: false while the replay's own process (or a resume of it)
-- still runs.
SELECT pg_try_advisory_lock(hashtext('cronstream.replay'), ($1::bigint & 2147483647)::integer)

-- replay_row --
SELECT id, status, mode, consumer, schema, topic, partitions, range, handlers, finished_at
FROM replays WHERE id = $1

-- replay_positions --
-- How far replay $1 applied each partition of topic $2 (written with each batch).
SELECT partition, "offset" FROM replay_positions WHERE replay_id = $1 AND topic = $2

-- replay_resume --
-- Replay $1 runs again under its own id (its positions are kept under it); the counters
-- go on from where its row has them.
UPDATE replays
SET status = 'running', finished_at = NULL, error = NULL, resumed_at = now(), resumed_by = $2
WHERE id = $1 AND status <> 'succeeded'
RETURNING records, applied, duplicates, dead_lettered

-- replay_lock_schema --
-- Taken by a rebuild's start and held to the end of its transaction: two rebuilds
-- starting into schema $1 at once check for each other one after the other.
SELECT pg_advisory_xact_lock(hashtext('cronstream.rebuild'), hashtext($1))

-- replay_holder --
-- The replay of another consumer than $2 still writing into schema $1: its row says
-- 'running' and its session holds replay_hold's lock.
SELECT r.id, r.consumer, r.started_by, r.started_at
FROM replays AS r
WHERE r.schema = $1 AND r.consumer <> $2 AND r.status = 'running'
  AND EXISTS (
      SELECT FROM pg_locks AS l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::bigint = hashtext('cronstream.replay')::bigint & 4294967295
        AND l.objid::bigint = r.id & 2147483647)
ORDER BY r.id
LIMIT 1

-- replay_last_rebuild --
-- The latest rebuild by consumer $1 of topic $2: the schema its checkpoints belong to.
SELECT id, schema, started_at FROM replays
WHERE mode = 'rebuild' AND consumer = $1 AND topic = $2
ORDER BY id DESC
LIMIT 1

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

-- replay_live_schemas --
-- Every schema of the live search_path ("$user" and public included): a rebuild
-- writing into one of them would write into live tables.
SELECT current_schemas(false)

-- replay_table_schema --
-- The schema a table name resolves to on the live search_path; NULL when none.
SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)

-- replay_missing_columns --
-- Columns of the live table $1 that its rebuild copy $2 lacks; none when no copy exists.
SELECT coalesce(array_agg(live.attname::text ORDER BY live.attnum), '{}')
FROM pg_attribute AS live
WHERE live.attrelid = to_regclass($1) AND live.attnum > 0 AND NOT live.attisdropped
  AND to_regclass($2) IS NOT NULL
  AND NOT EXISTS (SELECT FROM pg_attribute AS copy
                  WHERE copy.attrelid = to_regclass($2) AND copy.attname = live.attname
                    AND copy.attnum > 0 AND NOT copy.attisdropped)

-- replay_search_path --
SELECT current_setting('search_path')

-- replay_set_search_path --
-- Local to the transaction (here: the handler's savepoint, whose rollback undoes it).
SELECT set_config('search_path', $1, true)
