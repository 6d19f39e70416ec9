-- `cronstream dlq` (streams/dlq/): dead letters listed, shown, re-driven and resolved.
-- A NULL filter matches everything; a reason filter is a case-insensitive substring.

-- dlq_summary --
-- Per consumer, topic and reason: unresolved and resolved counts, first and last seen
-- (the last time one failed, a redrive's failure included).
SELECT consumer, topic, error,
       count(*) FILTER (WHERE resolved_at IS NULL) AS unresolved,
       count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved,
       min(created_at) AS first_seen,
       max(coalesce(failed_at, created_at)) AS last_seen
FROM dead_letters
WHERE ($1::text IS NULL OR topic = $1)
  AND ($2::text IS NULL OR strpos(lower(error), lower($2)) > 0)
  AND ($3::boolean OR resolved_at IS NULL)
GROUP BY consumer, topic, error
ORDER BY consumer, topic, unresolved DESC, error

-- dlq_one --
SELECT d.id, d.consumer, d.topic, d.partition, d."offset", d.dlq_topic, d.error, d.attempts,
       d.created_at, d.failed_at, d.resolved_at, d.resolved_by
FROM dead_letters AS d WHERE d.id = $1

-- dlq_select --
-- The unresolved dead letters of consumer $1 a redrive takes: topic $2, reason $3,
-- recorded at or after $4 and before $5, partition $6, original offsets $7 to $8.
SELECT id, topic, partition, "offset", dlq_topic, error, created_at
FROM dead_letters
WHERE consumer = $1 AND resolved_at IS NULL
  AND ($2::text IS NULL OR topic = $2)
  AND ($3::text IS NULL OR strpos(lower(error), lower($3)) > 0)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::integer IS NULL OR partition = $6)
  AND ($7::bigint IS NULL OR "offset" >= $7)
  AND ($8::bigint IS NULL OR "offset" <= $8)
ORDER BY id

-- dlq_lock --
-- Taken in the transaction that applies them: of these, the ones still unresolved (a
-- redrive running at the same time waits here, then skips what this one resolved).
SELECT id FROM dead_letters
WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL
ORDER BY id
FOR UPDATE

-- dlq_resolve --
UPDATE dead_letters SET resolved_at = now(), resolved_by = $2
WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL

-- dlq_redrive_start --
INSERT INTO dlq_redrives (started_by, consumer, filters, selected)
VALUES ($1, $2, $3, $4)
RETURNING id

-- dlq_redrive_progress --
-- In the transaction of the effects it counts.
UPDATE dlq_redrives
SET applied = applied + $2, failed_again = failed_again + $3, skipped = skipped + $4
WHERE id = $1

-- dlq_redrive_finish --
UPDATE dlq_redrives
SET finished_at = now(), status = $2, missing = $3, unreadable = $4, error = $5
WHERE id = $1
