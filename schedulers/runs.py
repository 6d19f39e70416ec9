"""cron_runs: one row per tick, so a tick runs at most once, whoever leads."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from cronstream.queries import query


def run_id(job: str, tick: datetime) -> str:
    """Deterministic: the same job and scheduled time always give the same id."""
    return f"{job}@{tick.isoformat()}"


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

    async def finish(self, run: str, status: str, rows: int, error: str | None) -> None:
        await self.pool.execute(query("runs_finish"), run, status, rows, error)

    async def skip(self, job: str, tick: datetime, reason: str) -> None:
        await self.pool.execute(query("runs_skip"), run_id(job, tick), job, tick, self.node, reason)

    async def last_ticks(self) -> dict[str, datetime]:
        rows = await self.pool.fetch(query("runs_last_ticks"))
        return {row["job"]: row["scheduled_for"] for row in rows}

    async def abandon_others(self) -> int:
        """Fail the runs a previous leader left 'running'; how many there were."""
        result = await self.pool.execute(query("runs_abandon"), self.node)
        return int(result.split()[-1])
