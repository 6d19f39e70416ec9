"""Reading topics back in tests, with deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from cronstream.config.settings import Settings
from cronstream.kafka import clients


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Each partition's log end offset; {} when the topic does not exist."""
    if not await topic_exists(settings, topic):
        return {}
    async with clients.started(clients.Admin(settings)) as admin:
        (described,) = await admin.client.describe_topics([topic])
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    async with clients.started(
        AIOKafkaConsumer(**clients.connection_options(settings))
    ) as consumer:
        offsets = await consumer.end_offsets(partitions)
    return {tp.partition: offset for tp, offset in offsets.items()}


async def topic_exists(settings: Settings, topic: str) -> bool:
    async with clients.started(clients.Admin(settings)) as admin:
        return topic in await admin.client.list_topics()


async def read_all(
    settings: Settings, topic: str, expected: int, deadline_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `topic` from the start until `expected` records arrived or the deadline passed."""
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **clients.connection_options(settings),
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with clients.started(consumer):
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
