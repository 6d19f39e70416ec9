"""The scheduler process: lead (or stand by), keep the job set fresh, run due ticks.

Any number of these may run; one leads through leader.py. The leader:
- loads jobs from the jobs file and cron_jobs, and reloads on NOTIFY cronstream_jobs
  (and every RELOAD_SECONDS, in case a notification was missed);
- steps the timetable whenever a tick is due, claiming each tick in cron_runs first;
- on NOTIFY on a scan job's `notify_channel`, runs that job at once, debounced; its
  LISTEN connection (listener.py) is re-established when it dies;
- deletes cron_runs older than CRONSTREAM_RUN_RETENTION days, in bounded batches;
- checks every second that it still holds the lock, and stands down when it does not.

An outage (Postgres or Kafka away) while leading stands it down to try again; any other
error (a privilege revoked, a table dropped) ends `run` with `SchedulerFailed`: retried,
it would fail again each second while the process looked alive. `role` and `readiness`
are what its /readyz says (cronstream/web/health.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.config.settings import Settings
from cronstream.errors import CronstreamError
from cronstream.events.envelope import new_trace_id
from cronstream.handlers.failures import is_outage
from cronstream.kafka import clients
from cronstream.pg import connections
from cronstream.runtime import metrics, shutdown
from cronstream.runtime.logs import trace, trace_id_var
from cronstream.runtime.retry import pause
from cronstream.runtime.untrusted import shown
from cronstream.schedulers.jobs import Job, JobError, load_file, load_table, merge, scan_config
from cronstream.schedulers.leader import Leadership
from cronstream.schedulers.listener import Listener
from cronstream.schedulers.runs import Runs
from cronstream.schedulers.scan import ScanBlocked, Scanner, scanner_for
from cronstream.schedulers.timetable import Clock, SystemClock, Timetable

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
RELOAD_SECONDS = 10.0
PRUNE_EVERY = timedelta(minutes=1)
PRUNE_BATCH = 5_000  # rows per DELETE: short statements, short row locks
PRUNE_BATCHES = 20  # per round: a large backlog goes over several rounds


class SchedulerFailed(CronstreamError):
    """An error retrying cannot mend ended the scheduler; the message says which."""

    @classmethod
    def of(cls, error: Exception) -> SchedulerFailed:
        if isinstance(error, asyncpg.UndefinedTableError):
            hint = ": the database is not migrated; run 'cronstream migrate'"
        else:
            hint = ""
        source = "Postgres" if isinstance(error, asyncpg.PostgresError) else type(error).__name__
        return cls(f"scheduler: {source}: {shown(str(error))}{hint}")


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    def __init__(
        self, settings: Settings, jobs_file: Path | None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.file_jobs: list[Job] = load_file(jobs_file) if jobs_file else []
        self.clock = clock or SystemClock()
        self.node = node_name()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.listener = Listener(settings, self.clock, self.wake)
        self.invalid: dict[str, str] = {}  # cron_jobs rows refused, and why
        self.leadership: Leadership | None = None
        self.leading = False

    def role(self) -> str:
        """ "leader", "standby" (another scheduler holds the lock) or "starting"."""
        if self.leading:
            return "leader"
        if self.leadership is not None and self.leadership.standing_by:
            return "standby"
        return "starting"

    def readiness(self) -> str | None:
        """None once it leads or stands by, else why not (GET /readyz)."""
        if self.role() == "starting":
            return "starting: not yet leading nor standing by (is Postgres reachable?)"
        return None

    async def run(self) -> None:
        """Until `stopping` is set (or the task is cancelled): stand by, lead, repeat."""
        # Scans and bookkeeping: a table locked or a statement stuck past the timeouts
        # fails that run, and frees its connection for the other jobs. The leader's and
        # the LISTEN connections are their own, without them: they only idle or run
        # statements that never wait (pg_try_advisory_lock, SELECT 1, LISTEN).
        bounds = connections.session_settings(self.settings, f"cronstream-scheduler {self.node}")
        pool = await connections.pool(self.settings, max_size=4, server_settings=bounds)
        async with pool:
            await clients.ensure_topics(self.settings, [self.settings.sync_topic])
            async with clients.started(clients.producer(self.settings)) as producer:
                await self._stand_by_and_lead(pool, producer)

    async def _stand_by_and_lead(self, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        leadership = self.leadership = Leadership(self.settings, self.node)
        try:
            metrics.scheduler_state("standby")
            while not self.stopping.is_set() and await leadership.acquire(self.stopping):
                log.info("leading as %s", self.node)
                metrics.scheduler_state("leading")
                self.leading = True
                try:
                    await self._lead(pool, producer, leadership)
                except Exception as error:
                    if not is_outage(error):
                        raise SchedulerFailed.of(error) from error
                    # Postgres went away mid-leadership: give the lock up (another
                    # scheduler may lead) and stand by again.
                    log.warning("leading failed, standing down: %r", error)
                    await leadership.release()
                    await pause(CHECK_SECONDS, self.stopping)
                finally:
                    self.leading = False
                    metrics.scheduler_state("standby")
        finally:
            await leadership.release()
            metrics.scheduler_state(None)

    async def _lead(
        self, pool: asyncpg.Pool, producer: AIOKafkaProducer, leadership: Leadership
    ) -> None:
        runs = Runs(pool, self.node)
        abandoned = await runs.abandon_others()
        if abandoned:
            log.warning("marked %d run(s) of a previous leader as failed", abandoned)

        async def run_tick(job: Job, tick: datetime) -> None:
            # One trace id per run: every line of it carries it, the scanner's included.
            with trace(new_trace_id()):
                await self._run_tick(pool, producer, runs, job, tick)

        async def skip_tick(job: Job, tick: datetime, reason: str) -> None:
            log.warning("job %s: tick %s skipped: %s", job.name, tick.isoformat(), reason)
            metrics.CRON_RUNS.labels(job.name, "skipped").inc()
            await runs.skip(job.name, tick, reason)

        async def report(job: Job, when: datetime, reason: str) -> None:
            metrics.CRON_RUNS.labels(job.name, "failed").inc()
            await runs.fail(job.name, when, reason)

        timetable = Timetable(self.clock, run_tick, skip_tick, report)
        listener = self.listener
        listener.reset()
        self.invalid = {}  # a new leader reports every invalid row once more
        last_reload = self.clock.now()
        pruner: asyncio.Task[None] | None = None
        last_prune: datetime | None = None
        try:
            await listener.listen()
            while not self.stopping.is_set():
                if not await leadership.still_held():
                    log.error("lost the leader lock (its connection dropped); standing down")
                    return
                now = self.clock.now()
                if listener.retry_at is not None and now >= listener.retry_at:
                    await listener.relisten()
                if listener.reload_needed or now - last_reload > timedelta(seconds=RELOAD_SECONDS):
                    await self._reload(pool, timetable, runs)
                    last_reload = now
                if (pruner is None or pruner.done()) and (
                    last_prune is None or now - last_prune >= PRUNE_EVERY
                ):
                    pruner = asyncio.create_task(self._prune(runs))
                    last_prune = now
                self._fire_notified(timetable, now)
                due = await timetable.step()
                until = now + timedelta(seconds=CHECK_SECONDS)
                if due is not None and due < until:
                    until = due
                await self.clock.sleep_until(listener.next_deadline(until), self.wake)
                self.wake.clear()
        except asyncio.CancelledError:
            self.stopping.set()  # `cronstream run` stops us by cancelling: scans stop after a page
            raise
        finally:
            if pruner is not None:
                await shutdown.cancel_and_wait(pruner)
            await timetable.drain(self.settings.shutdown_timeout / 2)
            listener.drop()

    async def _reload(self, pool: asyncpg.Pool, timetable: Timetable, runs: Runs) -> None:
        self.listener.reload_needed = False
        async with pool.acquire() as connection:
            table_jobs, invalid = await load_table(connection)
        for name, error in invalid.items():
            if self.invalid.get(name) != error:  # once per problem, not every reload
                log.error("%s; the job is not scheduled", error, extra={"job": name})
        self.invalid = invalid
        jobs = merge(self.file_jobs, table_jobs, invalid)
        # Only jobs new to the timetable need their last tick: one index probe each.
        new = [job.name for job in jobs if job.enabled and job.name not in timetable.planned]
        timetable.set_jobs(jobs, resume_from=await runs.last_ticks(new) if new else {})
        await self.listener.sync(
            c for job in timetable.jobs.values() if (c := scan_config(job).notify_channel)
        )

    async def _prune(self, runs: Runs) -> None:
        """Delete runs older than the retention, a bounded batch at a time."""
        before = self.clock.now() - timedelta(days=self.settings.run_retention)
        deleted = 0
        try:
            for _ in range(PRUNE_BATCHES):
                batch = await runs.prune(before, PRUNE_BATCH)
                deleted += batch
                if batch < PRUNE_BATCH:
                    break
        except Exception:
            # Pruning is housekeeping: the next round tries again; ticks go on.
            log.exception("pruning cron_runs failed")
        if deleted:
            log.info("pruned %d run(s) scheduled before %s", deleted, before.isoformat())

    def _fire_notified(self, timetable: Timetable, now: datetime) -> None:
        for channel in self.listener.due(now):
            for job in timetable.jobs.values():
                if scan_config(job).notify_channel == channel:
                    log.info("job %s: NOTIFY on %s, scanning now", job.name, channel)
                    metrics.NOTIFY_RUNS.labels(job.name).inc()
                    timetable.trigger(job.name)

    async def _run_tick(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        runs: Runs,
        job: Job,
        tick: datetime,
    ) -> None:
        run = await runs.claim(job.name, tick)
        if run is None:
            log.info("job %s: tick %s already taken", job.name, tick.isoformat())
            return
        trace_id = trace_id_var.get() or new_trace_id()
        lag = (self.clock.now() - tick).total_seconds()
        metrics.CRON_TICK_LAG.labels(job.name).observe(max(lag, 0.0))
        log.info(
            "job %s: run %s started",
            job.name,
            run,
            extra={"job": job.name, "trace_id": trace_id, "tick_lag_s": round(lag, 3)},
        )
        scanner: Scanner | None = None
        try:
            async with pool.acquire() as connection:
                scanner = scanner_for(
                    job.name,
                    scan_config(job),
                    connection,
                    producer,
                    self.settings.sync_topic,
                    trace_id,
                )
                rows = await scanner.scan(should_stop=self.stopping.is_set)
            await runs.finish(run, "succeeded", rows, None, scanner.rejected)
            metrics.CRON_RUNS.labels(job.name, "succeeded").inc()
        except asyncio.CancelledError:
            await self._finish_failed(runs, job, run, scanner, "cancelled at shutdown")
            raise
        except (JobError, ScanBlocked) as error:
            # The job's own definition (a missing table, a wrong column), its table
            # locked past the lock timeout, a privilege its role lacks: one line says it.
            log.error("job %s: run %s failed: %s", job.name, run, error, extra={"job": job.name})
            await self._finish_failed(runs, job, run, scanner, str(error))
        except Exception as error:
            log.exception(
                "job %s: run %s failed",
                job.name,
                run,
                extra={"job": job.name, "trace_id": trace_id},
            )
            await self._finish_failed(runs, job, run, scanner, f"{type(error).__name__}: {error}")

    @staticmethod
    async def _finish_failed(
        runs: Runs, job: Job, run: str, scanner: Scanner | None, error: str
    ) -> None:
        emitted, rejected = (scanner.emitted, scanner.rejected) if scanner else (0, 0)
        metrics.CRON_RUNS.labels(job.name, "failed").inc()
        await runs.finish(run, "failed", emitted, error, rejected)
