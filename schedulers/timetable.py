"""The timetable: which ticks are due, misfires, overlap, jitter; with an injectable clock.

A tick is one scheduled fire time of one job. The timetable remembers, per job, up to
which instant it has planned; each step plans the ticks in (planned, now]:

- a tick at most `misfire_grace` old is on time and runs;
- older ticks misfired (the scheduler was paused, down or busy). The job's policy says
  what happens: `skip` runs none of them, `once` runs one (the latest tick stands for
  all of them), `all` runs them all, oldest first, but at most `max_catchup`.

Planning never walks the missed ticks: a per-second job resuming after a month missed
millions. It finds the newest ticks by binary search (`Schedule.latest`), so its cost
grows with `max_catchup` and the logarithm of the pause.

A job whose schedule raises (it should not: validation refuses expressions that never
fire) is reported once and set aside until its definition changes; the others go on.

A tick that finds the job's previous run still going is recorded as skipped with the
reason; runs of one job never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cronstream.runtime.retry import pause
from cronstream.schedulers.cron import CronError
from cronstream.schedulers.jobs import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickPlan:
    run: list[datetime]
    """The ticks to run, oldest first: always the newest ticks of the range."""
    misfired: tuple[datetime, datetime] | None = None
    """The first and the last tick that will not run, when there are any."""


def plan_ticks(job: Job, after: datetime, now: datetime) -> TickPlan:
    """The ticks of `job` in (after, now] to run, by its misfire policy.

    However long the pause, at most `max_catchup` ticks run, and only the ticks that
    run (plus a few binary searches) are computed.
    """
    schedule = job.schedule
    first = schedule.next_after(after)
    if first > now:
        return TickPlan([])
    # On time: now - tick <= grace, i.e. tick > now - grace - 1 µs.
    on_time_after = max(after, now - job.misfire_grace - timedelta(microseconds=1))
    late = first <= on_time_after
    if late and job.misfire_policy == "skip":
        run = schedule.latest(on_time_after, now, job.max_catchup)
    elif late and job.misfire_policy == "once":
        run = schedule.latest(after, now, 1)
    else:  # nothing late, or `all`: the newest ticks, at most max_catchup of them
        run = schedule.latest(after, now, job.max_catchup)
    # `run` holds the newest ticks; any older one misfired.
    if run and run[0] == first:
        return TickPlan(run)
    newest_missed = run[0] - timedelta(microseconds=1) if run else now
    (last,) = schedule.latest(after, newest_missed, 1)
    return TickPlan(run, (first, last))


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return at `when`, or earlier when `wake` is set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        seconds = (when - self.now()).total_seconds()
        if seconds > 0:
            await pause(seconds, wake)


Runner = Callable[[Job, datetime], Awaitable[None]]
"""Runs one tick (claiming it in cron_runs first); returns when the run is over."""
Skipper = Callable[[Job, datetime, str], Awaitable[None]]
"""Records a tick as skipped, with the reason."""
Reporter = Callable[[Job, datetime, str], Awaitable[None]]
"""Records that a job cannot be scheduled (at the given time), with the reason."""


async def _log_only(job: Job, when: datetime, reason: str) -> None:
    """The default Reporter: the timetable has logged the error already."""


class Timetable:
    """Plans and starts ticks for a set of jobs; the caller decides when to step."""

    def __init__(
        self, clock: Clock, run_tick: Runner, skip: Skipper, report: Reporter = _log_only
    ) -> None:
        self.clock = clock
        self.run_tick = run_tick
        self.skip = skip
        self.report = report
        self.jobs: dict[str, Job] = {}
        self.planned: dict[str, datetime] = {}
        self.running: dict[str, asyncio.Task[None]] = {}
        self.rerun: set[str] = set()
        self.broken: dict[str, str] = {}  # job -> why it cannot be scheduled

    def set_jobs(self, jobs: Sequence[Job], resume_from: dict[str, datetime] | None = None) -> None:
        """Replace the job set; new jobs plan from `resume_from` (their last tick) or now."""
        now = self.clock.now()
        resume_from = resume_from or {}
        previous = self.jobs
        self.jobs = {job.name: job for job in jobs if job.enabled}
        for name in list(self.planned):
            if name not in self.jobs:
                del self.planned[name]
        for name in list(self.broken):
            if self.jobs.get(name) != previous.get(name):
                del self.broken[name]  # a changed definition gets another chance
        for name, job in self.jobs.items():
            if name not in self.planned:
                self.planned[name] = resume_from.get(name, now)
            elif previous[name].schedule != job.schedule:
                self.planned[name] = now  # a new schedule starts now, with no misfires

    async def step(self) -> datetime | None:
        """Start every due tick; return when the next one is due (None without jobs)."""
        now = self.clock.now()
        upcoming: list[datetime] = []
        for name, job in self.jobs.items():
            if name in self.broken:
                continue
            try:
                ticks = plan_ticks(job, self.planned[name], now)
                upcoming.append(job.schedule.next_after(now))
            except Exception as error:
                # One job's schedule must not stop the others: set it aside, say so.
                await self._set_aside(job, now, error)
                continue
            self.planned[name] = now
            if ticks.misfired:
                first, last = ticks.misfired
                log.warning(
                    "job %s: ticks from %s to %s misfired, policy %s",
                    name,
                    first.isoformat(),
                    last.isoformat(),
                    job.misfire_policy,
                    extra={"job": name},
                )
            if ticks.run:
                await self._start(job, ticks.run)
        return min(upcoming, default=None)

    async def _set_aside(self, job: Job, now: datetime, error: Exception) -> None:
        # A CronError is written for the user; any other is a bug, its class names it.
        cause = str(error) if isinstance(error, CronError) else f"{type(error).__name__}: {error}"
        reason = f"cannot be scheduled: {cause}"
        self.broken[job.name] = reason
        log.error(
            "job %s %s; its other runs wait until its definition changes",
            job.name,
            reason,
            exc_info=not isinstance(error, CronError),
            extra={"job": job.name},
        )
        await self.report(job, now, reason)

    async def _start(self, job: Job, ticks: list[datetime]) -> None:
        """Run the ticks one after another (a catch-up), unless a run is still going."""
        current = self.running.get(job.name)
        if current is not None and not current.done():
            for tick in ticks:
                await self.skip(job, tick, "previous run still running")
            return
        self.running[job.name] = asyncio.create_task(self._run_ticks(job, ticks))

    def trigger(self, name: str) -> None:
        """Run a job now, outside its schedule (a NOTIFY); once more if it is running."""
        job = self.jobs.get(name)
        if job is None:
            return
        current = self.running.get(name)
        if current is not None and not current.done():
            self.rerun.add(name)  # the running scan may have passed the change already
            return
        self.running[name] = asyncio.create_task(
            self._run_ticks(job, [self.clock.now()], jitter=False)
        )

    async def _run_ticks(self, job: Job, ticks: list[datetime], jitter: bool = True) -> None:
        delay = job.jitter_for(ticks[0]) if jitter else timedelta(0)
        if delay:
            await asyncio.sleep(delay.total_seconds())
        while ticks:
            tick = ticks.pop(0)
            try:
                await self.run_tick(job, tick)
            except Exception:
                log.exception(
                    "job %s: run for %s failed",
                    job.name,
                    tick.isoformat(),
                    extra={"job": job.name},
                )
            if not ticks and job.name in self.rerun:
                self.rerun.discard(job.name)
                ticks.append(self.clock.now())

    async def drain(self, seconds: float) -> None:
        """Wait for running ticks to finish, up to `seconds`; then cancel (roll back) them."""
        tasks = [task for task in self.running.values() if not task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
