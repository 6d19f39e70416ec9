"""cron_runs: one row per tick, so a tick runs at most once, whoever leads.

Every query here reads the history through an index: per job, the newest run is one
probe of cron_runs_job_recent (job, scheduled_for DESC); pruning walks
cron_runs_scheduled_for from the oldest end in bounded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from cronstream.schedulers.sql import query


def run_id(job: str, tick: datetime) -> str:
    """Deterministic: the same job and scheduled time always give the same id."""
    return f"{job}@{tick.isoformat()}"


async def latest(connection: asyncpg.Connection, jobs: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Each named job's newest run (jobs without one are left out)."""
    rows = await connection.fetch(query("runs_latest"), list(jobs))
    return {row["job"]: row for row in rows}


class Runs:
    def __init__(self, pool: asyncpg.Pool, node: str) -> None:
        self.pool = pool
        self.node = node

    async def claim(self, job: str, tick: datetime) -> str | None:
        """The run id when this node got the tick; None when it was already taken."""
        found = await self.pool.fetchval(
            query("runs_claim"), run_id(job, tick), job, tick, self.node
        )
        return None if found is None else str(found)

    async def finish(
        self, run: str, status: str, rows: int, error: str | None, rejected: int = 0
    ) -> None:
        """Close a run: `rows` events emitted, `rejected` source rows refused."""
        await self.pool.execute(query("runs_finish"), run, status, rows, error, rejected)

    async def skip(self, job: str, tick: datetime, reason: str) -> None:
        await self._record(job, tick, "skipped", reason)

    async def fail(self, job: str, when: datetime, reason: str) -> None:
        """Record that a job cannot be scheduled, as a failed run at `when`."""
        await self._record(job, when, "failed", reason)

    async def _record(self, job: str, when: datetime, status: str, reason: str) -> None:
        args = (run_id(job, when), job, when, self.node, reason, status)
        await self.pool.execute(query("runs_record"), *args)

    async def last_ticks(self, jobs: Sequence[str]) -> dict[str, datetime]:
        """Each named job's newest scheduled time: where the timetable resumes it."""
        async with self.pool.acquire() as connection:
            newest = await latest(connection, jobs)
        return {job: run["scheduled_for"] for job, run in newest.items()}

    async def abandon_others(self) -> int:
        """Fail the runs a previous leader left 'running'; how many there were."""
        result = await self.pool.execute(query("runs_abandon"), self.node)
        return int(result.split()[-1])

    async def prune(self, before: datetime, batch: int) -> int:
        """Delete at most `batch` runs scheduled before `before`; how many went.

        Each job's newest run stays, however old: the timetable resumes the job from it.
        """
        result = await self.pool.execute(query("runs_prune"), before, batch)
        return int(result.split()[-1])
