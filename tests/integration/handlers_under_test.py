"""Handlers the worker tests load with --handlers; each counts what it applied."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from cronstream import Event, Registry

COUNTS_TABLE = """
CREATE TABLE IF NOT EXISTS event_counts (
    event_id text PRIMARY KEY,
    applied integer NOT NULL
)
"""
MARKER_ENV = "CRONSTREAM_TEST_BATCH_MARKER"
HANDLER_LINE = "handler of its own: counting"

log = logging.getLogger(__name__)


async def count(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Not idempotent on purpose: a doubled application shows up as applied = 2."""
    await connection.executemany(
        "INSERT INTO event_counts (event_id, applied) VALUES ($1, 1) "
        "ON CONFLICT (event_id) DO UPDATE SET applied = event_counts.applied + 1",
        [(event.id,) for event in events],
    )


async def slow_count(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Counts, after announcing the batch in a marker file and holding it a while."""
    marker = os.environ.get(MARKER_ENV)
    if marker:
        await asyncio.to_thread(Path(marker).write_text, str(len(events)))
    await asyncio.sleep(float(events[0].payload.get("hold_seconds", 2)))
    await count(events, connection)


async def blocks_then_counts(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Blocks the event loop a while (synchronous code in a handler), then counts."""
    time.sleep(float(events[0].payload.get("hold_seconds", 2)))  # noqa: ASYNC251 (on purpose)
    await count(events, connection)


async def logs_and_counts(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Logs a line of its own, as a user's handler does, then counts: no trace id passed."""
    log.info("%s %d event(s)", HANDLER_LINE, len(events), extra={"events": len(events)})
    await count(events, connection)


async def always_fails(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    raise RuntimeError(f"refusing {len(events)} event(s)")


async def hangs(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Never returns: only the handler timeout gets the worker past it."""
    await asyncio.Event().wait()


async def hangs_in_postgres(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    """Never returns from the server: the timeout must cancel a running statement."""
    await connection.execute("SELECT pg_sleep(3600)")


def register(registry: Registry) -> None:
    registry.register("hangs", hangs)
    registry.register("hangs_in_postgres", hangs_in_postgres)
    registry.register("count", count)
    registry.register("slow_count", slow_count)
    registry.register("blocks", blocks_then_counts)
    registry.register("always_fails", always_fails)
    registry.register("logs", logs_and_counts)
