"""Reading topics back in tests, with deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cronstream.kafka import connection_options
from cronstream.settings import Settings


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Each partition's log end offset; {} when the topic does not exist."""
    if not await topic_exists(settings, topic):
        return {}
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()  # inside: a cancelled start must still stop it
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [p["partition"] for p in described["partitions"]]
    consumer = AIOKafkaConsumer(**connection_options(settings))
    try:
        await consumer.start()  # inside: a cancelled start must still stop it
        offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def topic_exists(settings: Settings, topic: str) -> bool:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()  # inside: a cancelled start must still stop it
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def read_all(
    settings: Settings, topic: str, expected: int, deadline_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `topic` from the start until `expected` records arrived or the deadline passed."""
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **connection_options(settings),
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.start()  # inside: a cancelled start must still stop it
        deadline = time.monotonic() + deadline_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
        # Anything beyond `expected` that is already there would be a bug too.
        extra = await consumer.getmany(timeout_ms=300)
        for partition_records in extra.values():
            records.extend(partition_records)
        return records
    finally:
        await consumer.stop()


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], deadline_s: float, what: str
) -> None:
    """Poll a predicate (plain or async) until true; fail with `what` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
