-- cron_runs retention: the leader deletes runs older than CRONSTREAM_RUN_RETENTION in
-- small batches, oldest first, which needs an index on scheduled_for. Runs left
-- 'running' are found through a partial index when a new leader starts, rather than by
-- reading the whole history.
CREATE INDEX cron_runs_scheduled_for ON cron_runs (scheduled_for);
CREATE INDEX cron_runs_running ON cron_runs (node) WHERE status = 'running';
