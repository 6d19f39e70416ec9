-- The scheduler: job store, runs, leadership (schedulers/).

-- cron_jobs_all --
SELECT name, schedule, timezone, kind, config, misfire_policy, misfire_grace, max_catchup,
       jitter, enabled
FROM cron_jobs ORDER BY name

-- runs_claim --
-- UNIQUE (job, scheduled_for) makes this the one place a tick can be taken: a second
-- leader, or the same tick planned twice, gets no row back.
INSERT INTO cron_runs (id, job, scheduled_for, status, started_at, node)
VALUES ($1, $2, $3, 'running', now(), $4)
ON CONFLICT DO NOTHING
RETURNING id

-- runs_finish --
UPDATE cron_runs SET status = $2, finished_at = now(), rows_emitted = $3, error = $4
WHERE id = $1

-- runs_skip --
INSERT INTO cron_runs (id, job, scheduled_for, status, started_at, finished_at, node, error)
VALUES ($1, $2, $3, 'skipped', now(), now(), $4, $5)
ON CONFLICT DO NOTHING

-- runs_last_ticks --
SELECT job, max(scheduled_for) AS scheduled_for FROM cron_runs GROUP BY job

-- runs_abandon --
-- Runs a previous leader left 'running' when it died: they never finished.
UPDATE cron_runs SET status = 'failed', finished_at = now(),
       error = 'abandoned: its scheduler stopped before the run finished'
WHERE status = 'running' AND node <> $1

-- runs_latest --
SELECT DISTINCT ON (job) job, scheduled_for, status, started_at, finished_at, rows_emitted,
       error, node
FROM cron_runs ORDER BY job, scheduled_for DESC

-- leader_try_lock --
SELECT pg_try_advisory_lock(hashtext('cronstream.scheduler'))

-- leader_unlock --
SELECT pg_advisory_unlock(hashtext('cronstream.scheduler'))
