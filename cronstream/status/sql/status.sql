-- `cronstream status` and the status page (cronstream/status/collect.py): read-only.

-- status_checkpoints --
SELECT consumer, topic, partition, "offset", updated_at
FROM checkpoints ORDER BY consumer, topic, partition

-- status_dead_letter_counts --
SELECT topic, count(*) AS total,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour
FROM dead_letters GROUP BY topic ORDER BY topic

-- status_unresolved_by_reason --
-- The $1 topics and reasons with the most unresolved dead letters.
SELECT topic, error, count(*) AS unresolved, max(coalesce(failed_at, created_at)) AS last_seen
FROM dead_letters WHERE resolved_at IS NULL
GROUP BY topic, error ORDER BY unresolved DESC, topic, error LIMIT $1

-- status_dead_letters_latest --
SELECT consumer, topic, partition, "offset", dlq_topic, error, attempts, created_at
FROM dead_letters ORDER BY id DESC LIMIT $1

-- status_leader --
-- The session holding the scheduler's advisory lock (leader_try_lock; $1 is its name,
-- LEADER_LOCK in schedulers/leader.py). A bigint key is shown in pg_locks as classid
-- (high 32 bits) and objid (low 32 bits), objsubid 1; the leader names itself in its
-- application_name.
SELECT a.application_name, a.backend_start
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = (hashtext($1::text)::bigint >> 32) & 4294967295
  AND l.objid::bigint = hashtext($1::text)::bigint & 4294967295
LIMIT 1

-- status_group_checkpoints --
-- The sampler's (sampler.py): the checkpoints of one consumer ($1) on its topics ($2).
SELECT topic, partition, "offset" FROM checkpoints
WHERE consumer = $1 AND topic = ANY($2::text[])

-- status_runs_recent --
-- Each named job's newest $2 runs, newest first: an index probe per job
-- (cron_runs_job_recent), never a scan of the history.
SELECT j.job, r.status, r.scheduled_for, r.started_at, r.finished_at
FROM unnest($1::text[]) AS j(job)
CROSS JOIN LATERAL (
    SELECT status, scheduled_for, started_at, finished_at FROM cron_runs
    WHERE cron_runs.job = j.job
    ORDER BY scheduled_for DESC LIMIT $2
) AS r

-- status_dead_letters_per_minute --
SELECT date_trunc('minute', created_at) AS minute, count(*) AS n
FROM dead_letters WHERE created_at > now() - interval '1 hour'
GROUP BY 1 ORDER BY 1

-- status_unresolved_totals --
SELECT count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour,
       count(*) AS total
FROM dead_letters WHERE resolved_at IS NULL
