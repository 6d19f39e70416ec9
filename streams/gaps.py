"""Telling a real gap in a partition from a Kafka position that ran ahead of Postgres.

Offsets can be missing for good (compaction, retention, transaction markers), or Kafka
may deliver from beyond the checkpoint because its committed offset got ahead of it,
which the protocol forbids and so signals a bug or an operator's hand. A short-lived
consumer reads the first record at or after checkpoint + 1 to tell which.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from cronstream.kafka import connection_options
from cronstream.settings import Settings


async def first_offset_from(settings: Settings, topic: str, partition: int, start: int) -> int:
    """The offset of the first record at or after `start` (the log end if none)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **connection_options(settings),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        beginning = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if start >= end:
            return int(end)
        consumer.seek(tp, max(start, beginning))
        batch = await consumer.getmany(tp, timeout_ms=int(settings.request_timeout * 1000))
        records = batch.get(tp, [])
        return int(records[0].offset if records else end)
    finally:
        await consumer.stop()
