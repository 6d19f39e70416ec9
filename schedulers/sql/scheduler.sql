-- The scheduler: job store, runs, leadership (schedulers/).

-- cron_jobs_all --
-- Intervals as seconds: asyncpg cannot turn an interval of millions of years into a
-- timedelta, and one such row must not stop the others from loading.
SELECT name, schedule, timezone, kind, config, misfire_policy,
       extract(epoch FROM misfire_grace)::float8 AS misfire_grace_s, max_catchup,
       extract(epoch FROM jitter)::float8 AS jitter_s, enabled
FROM cron_jobs ORDER BY name

-- runs_claim --
-- UNIQUE (job, scheduled_for) makes this the one place a tick can be taken: a second
-- leader, or the same tick planned twice, gets no row back.
INSERT INTO cron_runs (id, job, scheduled_for, status, started_at, node)
VALUES ($1, $2, $3, 'running', now(), $4)
ON CONFLICT DO NOTHING
RETURNING id

-- runs_finish --
UPDATE cron_runs SET status = $2, finished_at = now(), rows_emitted = $3, error = $4,
    rows_rejected = $5
WHERE id = $1

-- runs_record --
-- A run that never ran, recorded as ended with status $6: a tick skipped ('skipped'),
-- or a job that cannot be scheduled ('failed'), so `jobs list` shows why.
INSERT INTO cron_runs (id, job, scheduled_for, status, started_at, finished_at, node, error)
VALUES ($1, $2, $3, $6, now(), now(), $4, $5)
ON CONFLICT DO NOTHING

-- runs_abandon --
-- Runs a previous leader left 'running' when it died: they never finished. The partial
-- index cron_runs_running finds them without reading the history.
UPDATE cron_runs SET status = 'failed', finished_at = now(),
       error = 'abandoned: its scheduler stopped before the run finished'
WHERE status = 'running' AND node <> $1

-- runs_latest --
-- Each named job's newest run: one index probe per named job (cron_runs_job_recent),
-- never a scan of the history.
SELECT j.job, r.scheduled_for, r.status, r.started_at, r.finished_at, r.rows_emitted,
       r.rows_rejected, r.error, r.node
FROM unnest($1::text[]) AS j(job)
CROSS JOIN LATERAL (
    SELECT * FROM cron_runs
    WHERE cron_runs.job = j.job
    ORDER BY scheduled_for DESC LIMIT 1
) AS r

-- runs_prune --
-- At most $2 runs scheduled before $1, oldest first, through cron_runs_scheduled_for;
-- never a job's newest run (the leader resumes a job from it) nor a running one. The
-- newest is a correlated subquery (one index probe per row read): as EXISTS it became
-- a hash join over the whole table. By ctid (a TID scan) for the same reason.
DELETE FROM cron_runs
WHERE ctid = ANY (ARRAY(
    SELECT old.ctid FROM cron_runs AS old
    WHERE old.scheduled_for < $1 AND old.status <> 'running'
      AND old.scheduled_for < (
          SELECT max(newer.scheduled_for) FROM cron_runs AS newer WHERE newer.job = old.job
      )
    ORDER BY old.scheduled_for
    LIMIT $2
))

-- leader_try_lock --
-- $1: the lock's name, LEADER_LOCK (schedulers/leader.py); the key is its hashtext.
SELECT pg_try_advisory_lock(hashtext($1::text))

-- leader_unlock --
SELECT pg_advisory_unlock(hashtext($1::text))
