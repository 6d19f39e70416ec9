"""The scheduler process: lead (or stand by), keep the job set fresh, run due ticks.

Any number of these may run; one leads through leadership.py. The leader:
- loads jobs from the jobs file and cron_jobs, and reloads on NOTIFY cronstream_jobs
  (and every RELOAD_SECONDS, in case a notification was missed);
- steps the engine whenever a tick is due, claiming each tick in cron_runs first;
- on NOTIFY on a scan job's `notify_channel`, runs that job at once, debounced;
- checks every second that it still holds the lock, and stands down when it does not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream import db, kafka
from cronstream.settings import Settings
from schedulers.engine import Clock, Engine, Job, SystemClock
from schedulers.jobs import load_file, load_table, merge, scan_config
from schedulers.leader import Leadership
from schedulers.runs import Runs
from schedulers.scanner import Scanner

log = logging.getLogger(__name__)

JOBS_CHANNEL = "cronstream_jobs"
CHECK_SECONDS = 1.0
RELOAD_SECONDS = 10.0
DEBOUNCE = timedelta(milliseconds=200)


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
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.reload_needed = True
        self.notified: dict[str, datetime] = {}  # channel -> when the debounce ends
        self.listening: set[str] = set()

    async def run(self) -> None:
        """Until `stop` is set (or the task is cancelled): stand by, lead, repeat."""
        pool = await db.pool(self.settings, max_size=4)
        await kafka.ensure_topics(self.settings, [self.settings.sync_topic])
        producer = kafka.producer(self.settings)
        await producer.start()
        leadership = Leadership(self.settings)
        try:
            while not self.stop.is_set() and await leadership.acquire(self.stop):
                log.info("leading as %s", self.node)
                try:
                    await self._lead(pool, producer, leadership)
                except Exception:
                    # Postgres went away mid-leadership, most likely: give the lock up
                    # (another scheduler may lead) and stand by again.
                    log.exception("leading failed; standing down")
                    await leadership.release()
                    await asyncio.sleep(CHECK_SECONDS)
        finally:
            await leadership.release()
            await producer.stop()
            await pool.close()

    async def _lead(
        self, pool: asyncpg.Pool, producer: AIOKafkaProducer, leadership: Leadership
    ) -> None:
        runs = Runs(pool, self.node)
        abandoned = await runs.abandon_others()
        if abandoned:
            log.warning("marked %d run(s) of a previous leader as failed", abandoned)

        async def run_tick(job: Job, tick: datetime) -> None:
            await self._run_tick(pool, producer, runs, job, tick)

        async def skip_tick(job: Job, tick: datetime, reason: str) -> None:
            log.warning("job %s: tick %s skipped: %s", job.name, tick.isoformat(), reason)
            await runs.skip(job.name, tick, reason)

        engine = Engine(self.clock, run_tick, skip_tick)
        listener = await db.connect(self.settings)
        await listener.add_listener(JOBS_CHANNEL, self._on_notify)
        self.listening = {JOBS_CHANNEL}
        self.reload_needed = True
        last_reload = self.clock.now()
        try:
            while not self.stop.is_set():
                if not await leadership.still_held():
                    log.error("lost the leader lock (its connection dropped); standing down")
                    return
                now = self.clock.now()
                if self.reload_needed or now - last_reload > timedelta(seconds=RELOAD_SECONDS):
                    await self._reload(pool, listener, engine, runs)
                    last_reload = now
                self._fire_notified(engine, now)
                due = await engine.step()
                until = now + timedelta(seconds=CHECK_SECONDS)
                if due is not None and due < until:
                    until = due
                for deadline in self.notified.values():
                    until = min(until, deadline)
                await self.clock.sleep_until(until, self.wake)
                self.wake.clear()
        except asyncio.CancelledError:
            self.stop.set()  # `cronstream run` stops us by cancelling: scans stop after a page
            raise
        finally:
            await engine.drain(self.settings.shutdown_timeout / 2)
            listener.terminate()

    async def _reload(
        self, pool: asyncpg.Pool, listener: asyncpg.Connection, engine: Engine, runs: Runs
    ) -> None:
        self.reload_needed = False
        async with pool.acquire() as connection:
            jobs = merge(self.file_jobs, await load_table(connection))
        engine.set_jobs(jobs, resume_from=await runs.last_ticks())
        channels = {JOBS_CHANNEL} | {
            c for job in engine.jobs.values() if (c := scan_config(job).notify_channel)
        }
        added = channels - self.listening
        for channel in added:
            await listener.add_listener(channel, self._on_notify)
            if channel != JOBS_CHANNEL:
                # A NOTIFY sent before this LISTEN is lost: scan once now, so a change
                # committed while this leader started does not wait for the cron tick.
                self.notified.setdefault(channel, self.clock.now())
        for channel in self.listening - channels:
            await listener.remove_listener(channel, self._on_notify)
        self.listening = channels
        if added:
            log.info("listening on %s", ", ".join(sorted(added)))

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            self.reload_needed = True
        elif channel not in self.notified:
            self.notified[channel] = self.clock.now() + DEBOUNCE
        self.wake.set()

    def _fire_notified(self, engine: Engine, now: datetime) -> None:
        for channel, deadline in list(self.notified.items()):
            if deadline > now:
                continue
            del self.notified[channel]
            for job in engine.jobs.values():
                if scan_config(job).notify_channel == channel:
                    log.info("job %s: NOTIFY on %s, scanning now", job.name, channel)
                    engine.trigger(job.name)

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
        trace_id = uuid.uuid4().hex
        lag = (self.clock.now() - tick).total_seconds()
        log.info(
            "job %s: run %s started",
            job.name,
            run,
            extra={"job": job.name, "trace_id": trace_id, "tick_lag_s": round(lag, 3)},
        )
        scanner: Scanner | None = None
        try:
            async with pool.acquire() as connection:
                scanner = Scanner(
                    job.name,
                    scan_config(job),
                    connection,
                    producer,
                    self.settings.sync_topic,
                    trace_id,
                )
                rows = await scanner.run(should_stop=self.stop.is_set)
            await runs.finish(run, "succeeded", rows, None)
        except asyncio.CancelledError:
            await runs.finish(
                run, "failed", scanner.emitted if scanner else 0, "cancelled at shutdown"
            )
            raise
        except Exception as error:
            log.exception(
                "job %s: run %s failed",
                job.name,
                run,
                extra={"job": job.name, "trace_id": trace_id},
            )
            await runs.finish(
                run, "failed", scanner.emitted if scanner else 0, f"{type(error).__name__}: {error}"
            )
