"""A handler that fails until its cause is fixed (a flag in the `gate` table), for the
dead-letter tests: `--handlers tests.integration.dlq_handlers`. An event whose payload
says `poison` fails even then. Applied events are counted per id in `event_counts`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from cronstream import Event, Registry
from tests.integration.handlers_under_test import count

GATE_TABLE = """
CREATE TABLE gate (fixed boolean NOT NULL);
INSERT INTO gate VALUES (false);
"""
ENVELOPE_TYPE = "thing_happened"
DEBEZIUM_ENTITY = "widgets"  # the Debezium topic's entity: its creates are widgets_created


async def gated(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    if not await connection.fetchval("SELECT fixed FROM gate"):
        raise RuntimeError("gate closed")
    for event in events:
        if event.payload.get("poison"):
            raise RuntimeError("still poisoned")
    await count(events, connection)


def register(registry: Registry) -> None:
    registry.register(ENVELOPE_TYPE, gated)
    registry.register(f"{DEBEZIUM_ENTITY}_created", gated)


def debezium_create(row_id: int, lsn: int, **columns: Any) -> tuple[bytes, bytes]:
    """A Debezium create (JsonConverter, schemas off): key and value."""
    source: dict[str, Any] = {"connector": "postgresql", "name": "dbz", "db": "shop"}
    source["schema"] = "public"
    source |= {"table": "widgets", "lsn": lsn, "ts_ms": 1795000000000 + lsn, "txId": lsn}
    value = {"before": None, "after": {"id": row_id, **columns}, "source": source, "op": "c"}
    return json.dumps({"id": row_id}).encode(), json.dumps(value, ensure_ascii=False).encode()
