"""Schedulers for tests: a `cronstream scheduler` process, and a job added as a row."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.integration.workers import WorkerProcess


def scheduler(env: dict[str, str], tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(env, tmp_path, name, args=["scheduler"])


async def add_job(
    db: asyncpg.Connection, name: str, schedule: str, scan: dict[str, object], **columns: object
) -> None:
    await db.execute(
        "INSERT INTO cron_jobs (name, schedule, config, misfire_policy) VALUES ($1, $2, $3, $4)",
        name,
        schedule,
        json.dumps({"scan": scan}),
        columns.get("misfire_policy", "skip"),
    )
