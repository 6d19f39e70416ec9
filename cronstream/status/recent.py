"""What the status shows over time from Postgres: each job's newest runs (its strip),
dead letters per minute over the last hour, and the unresolved dead letters."""

from __future__ import annotations

import asyncpg

from cronstream.status.model import RunMark, Status, Summary
from cronstream.status.sql import query

RUNS_SHOWN = 20


async def from_postgres(connection: asyncpg.Connection, status: Status) -> None:
    names = [job.name for job in status.jobs]
    runs: dict[str, list[RunMark]] = {}
    for row in await connection.fetch(query("status_runs_recent"), names, RUNS_SHOWN):
        started, finished = row["started_at"], row["finished_at"]
        runs.setdefault(row["job"], []).append(
            RunMark(
                status=row["status"],
                scheduled_for=row["scheduled_for"],
                duration_s=(finished - started).total_seconds() if started and finished else None,
            )
        )
    status.runs = {name: marks[::-1] for name, marks in runs.items()}  # oldest first
    status.dead_letters_per_minute = [
        (row["minute"], row["n"])
        for row in await connection.fetch(query("status_dead_letters_per_minute"))
    ]
    totals = await connection.fetchrow(query("status_unresolved_totals"))
    summary = status.summary = status.summary or empty_summary()
    summary.unresolved_last_hour, summary.unresolved_total = totals["last_hour"], totals["total"]


def empty_summary() -> Summary:
    return Summary(
        ready=None,
        not_ready=[],
        applied_per_s=None,
        group_lag=0,
        unresolved_last_hour=0,
        unresolved_total=0,
        leader=None,
        jobs_failing=[],
        jobs_set_aside=[],
        stalled=0,
    )
