"""The arms a user would write instead of cronstream, run in the benchmark's own process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import Arm, Stopwatch
from cronstream.config.settings import Settings
from cronstream.kafka import clients

# The projection's upsert (handlers/sql/projection.sql) as a hand-written loop writes it:
# a column array per field.
PROJECTION_UPSERT = """
INSERT INTO entity_projection AS p (entity, key, version, occurred_at, payload, event_id, source,
                                    deleted)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::jsonb[],
                     $6::text[], $7::text[], $8::boolean[])
ON CONFLICT (entity, key) DO UPDATE
SET version = EXCLUDED.version, occurred_at = EXCLUDED.occurred_at, payload = EXCLUDED.payload,
    event_id = EXCLUDED.event_id, source = EXCLUDED.source, deleted = EXCLUDED.deleted,
    updated_at = now()
WHERE CASE
        WHEN EXCLUDED.version IS NOT NULL AND p.version IS NOT NULL
            THEN EXCLUDED.version >= p.version
        ELSE EXCLUDED.occurred_at >= p.occurred_at
      END
"""

CHECKPOINT_UPSERT = """
INSERT INTO checkpoints (consumer, topic, partition, "offset")
SELECT $1, $2, u.partition, u.last FROM unnest($3::integer[], $4::bigint[]) AS u(partition, last)
ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset"
"""


def _consumer(settings: Settings, topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **clients.connection_options(settings),
    )


async def raw_produce(settings: Settings, topic: str, values: Iterable[tuple[bytes, bytes]]) -> Arm:
    """aiokafka alone sending ready bytes, idempotent with acks=all, counted after every ack.
    (`values` may be a generator: the time to make them is then counted too.)"""
    producer = AIOKafkaProducer(
        **clients.connection_options(settings), enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        watch = Stopwatch()
        window, sent = [], 0
        for key, value in values:
            sent += 1
            window.append(await producer.send(topic, value=value, key=key))
            if len(window) >= 2000:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
        return watch.stop(sent)
    finally:
        await producer.stop()


async def raw_read(settings: Settings, topic: str, n: int) -> Arm:
    """aiokafka getmany alone: the client's ceiling."""
    consumer = _consumer(settings, topic, None)
    await consumer.start()
    try:
        first = await consumer.getmany(timeout_ms=10_000)
        seen = sum(len(records) for records in first.values())
        watch, counted = Stopwatch(), seen
        while seen < n:
            polled = await consumer.getmany(timeout_ms=1000, max_records=2000)
            seen += sum(len(records) for records in polled.values())
        return watch.stop(seen - counted)
    finally:
        await consumer.stop()


def _newest_per_key(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in values:
        key = (event["entity"], str(event["key"]))
        current = newest.get(key)
        if current is None or event.get("version", 0) >= current.get("version", 0):
            newest[key] = event
    return list(newest.values())


async def upsert(connection: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
    """The projection's upsert, fed from plain dicts as a hand-written loop would."""
    rows = _newest_per_key(events)
    await connection.execute(
        PROJECTION_UPSERT,
        [e["entity"] for e in rows],
        [str(e["key"]) for e in rows],
        [e.get("version") for e in rows],
        [datetime.fromisoformat(e["occurred_at"]) for e in rows],
        [json.dumps(e["payload"]) for e in rows],
        [e["id"] for e in rows],
        [e["source"] for e in rows],
        [e["type"].endswith(("_deleted", ".deleted")) for e in rows],
    )


async def handwritten(settings: Settings, database_url: str, topic: str, n: int) -> Arm:
    """getmany, json.loads, newest-per-key upsert and checkpoint rows in one transaction,
    offsets committed to Kafka after COMMIT: the careful loop without cronstream."""
    group = f"{topic}.handwritten"
    consumer = _consumer(settings, topic, group)
    connection = await asyncpg.connect(database_url)
    await consumer.start()
    seen = 0
    watch: Stopwatch | None = None
    try:
        while seen < n:
            polled = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if not polled:
                continue
            watch = watch or Stopwatch()  # from the first batch on, as for the other arms
            events = [json.loads(r.value) for records in polled.values() for r in records]
            partitions = list(polled)
            async with connection.transaction():
                await upsert(connection, events)
                await connection.execute(
                    CHECKPOINT_UPSERT,
                    group,
                    topic,
                    [tp.partition for tp in partitions],
                    [polled[tp][-1].offset for tp in partitions],
                )
            await consumer.commit({tp: polled[tp][-1].offset + 1 for tp in partitions})
            seen += len(events)
    finally:
        await consumer.stop()
        await connection.close()
    assert watch is not None
    return watch.stop(n)
