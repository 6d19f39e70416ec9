"""The counting handler for replay tests, with a gate: a batch holding an event whose
payload says `gate` waits, inside its transaction, while a test holds GATE (a Postgres
advisory lock), so a test can stop a replay with a batch in flight."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cronstream import Event, Registry
from tests.integration.handlers_under_test import count

GATE = 727_001  # the advisory lock key
MODULE = "tests.integration.replay_handlers"


async def gated_count(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    if any(event.payload.get("gate") for event in events):
        await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", GATE)
    await count(events, connection)


def register(registry: Registry) -> None:
    registry.register("count", gated_count)
