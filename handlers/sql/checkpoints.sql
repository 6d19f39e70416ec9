-- The checkpoint protocol (handlers/applier.py). A checkpoint is the last Kafka
-- offset of a partition whose effects are committed; -1 when none is.

-- checkpoints_ensure --
-- Run in its own short transaction, before the batch's, so the batch transaction only
-- ever locks existing rows, always in the same order.
INSERT INTO checkpoints (consumer, topic, partition, "offset")
SELECT $1, u.topic, u.partition, -1
FROM unnest($2::text[], $3::integer[]) AS u(topic, partition)
ORDER BY u.topic, u.partition
ON CONFLICT DO NOTHING

-- checkpoints_lock --
-- Rows are locked in ORDER BY order, so two workers never deadlock on them; a worker
-- whose partition was reassigned waits here and then sees the advanced checkpoint.
SELECT c.topic, c.partition, c."offset"
FROM checkpoints AS c
JOIN unnest($2::text[], $3::integer[]) AS u(topic, partition)
  ON c.topic = u.topic AND c.partition = u.partition
WHERE c.consumer = $1
ORDER BY c.topic, c.partition
FOR UPDATE OF c

-- checkpoints_advance --
UPDATE checkpoints AS c
SET "offset" = u.last, updated_at = now()
FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(topic, partition, last)
WHERE c.consumer = $1 AND c.topic = u.topic AND c.partition = u.partition

-- checkpoints_of_consumer --
SELECT topic, partition, "offset", updated_at
FROM checkpoints WHERE consumer = $1 ORDER BY topic, partition

-- dead_letters_record --
INSERT INTO dead_letters (consumer, topic, partition, "offset", dlq_topic, error, attempts)
SELECT DISTINCT ON (u.topic, u.partition, u.offset)
       $1, u.topic, u.partition, u.offset, u.dlq_topic, u.error, u.attempts
FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::text[], $6::text[], $7::integer[])
  AS u(topic, partition, "offset", dlq_topic, error, attempts)
ORDER BY u.topic, u.partition, u.offset
-- Dead-lettered again (a redrive, a re-apply replay): the new reason, and unresolved.
ON CONFLICT (consumer, topic, partition, "offset") DO UPDATE
SET error = excluded.error, attempts = excluded.attempts, dlq_topic = excluded.dlq_topic,
    failed_at = now(), resolved_at = NULL, resolved_by = NULL

-- replay_positions_of --
-- How far replay $1 applied each partition: read under the checkpoint rows' locks, so
-- a retried batch sees what its lost-acknowledged transaction committed.
SELECT p.topic, p.partition, p."offset"
FROM replay_positions AS p
JOIN unnest($2::text[], $3::integer[]) AS u(topic, partition)
  ON p.topic = u.topic AND p.partition = u.partition
WHERE p.replay_id = $1

-- replay_positions_advance --
INSERT INTO replay_positions (replay_id, topic, partition, "offset")
SELECT $1, u.topic, u.partition, u.last
FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(topic, partition, last)
ON CONFLICT (replay_id, topic, partition) DO UPDATE
SET "offset" = GREATEST(replay_positions."offset", EXCLUDED."offset"), updated_at = now()
