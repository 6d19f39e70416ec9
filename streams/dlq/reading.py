"""Reading a dead-letter topic: every partition, from its beginning (or the first record
stamped at or after a time), to the log end captured when the reading starts.

Read without a consumer group, like a replay (streams/replay/): nothing is committed and
no live consumer is disturbed. A record aiokafka cannot parse (a header name that is
not UTF-8, written by someone else) is read by kafka_salvage and comes out Unreadable,
like any record whose headers are not a dead letter's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from cronstream.config.settings import Settings
from cronstream.errors import CronstreamError
from cronstream.handlers.records import ConsumedRecord, from_aiokafka
from cronstream.kafka import clients, metadata, salvage
from cronstream.runtime.untrusted import safe_text
from cronstream.streams.dlq.letters import Garbled, Letter, read_letter

log = logging.getLogger(__name__)


class DlqError(CronstreamError):
    """A dead-letter command that cannot go on (Kafka silent, records deleted, bad options)."""


@dataclass(frozen=True)
class Unreadable:
    """A record of a dead-letter topic that is no dead letter, and why."""

    at: ConsumedRecord
    reason: str


Found = Letter | Unreadable


def found(record: ConsumedRecord) -> Found:
    try:
        return read_letter(record)
    except Garbled as garbled:
        return Unreadable(record, str(garbled))


class LetterReader:
    """One pass over a dead-letter topic; `total` is known once it is started."""

    def __init__(self, settings: Settings, topic: str, since: datetime | None = None) -> None:
        self.settings = settings
        self.topic = topic
        self.since = since
        self.total = 0
        self._ranges: dict[TopicPartition, tuple[int, int]] = {}
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="none",
            **clients.connection_options(settings),
        )

    async def start(self) -> None:
        reader = self._consumer
        await reader.start()
        cluster = await metadata.cluster_metadata(reader)
        tps = [
            TopicPartition(self.topic, p) for p in cluster.partitions_for_topic(self.topic) or ()
        ]
        if not tps:
            return  # no such topic: no letters in it
        starts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
        if self.since is not None:
            stamped = await reader.offsets_for_times(
                dict.fromkeys(tps, int(self.since.timestamp() * 1000))
            )
            starts = {tp: stamped[tp].offset if stamped.get(tp) else ends[tp] for tp in tps}
        self._ranges = {tp: (starts[tp], ends[tp]) for tp in tps if starts[tp] < ends[tp]}
        self.total = sum(stop - start for start, stop in self._ranges.values())

    async def stop(self) -> None:
        await self._consumer.stop()

    async def batches(self, size: int) -> AsyncIterator[list[Found]]:
        """The topic's records in batches of at most `size`, each partition in order."""
        reader = self._consumer
        remaining = dict(self._ranges)
        if not remaining:
            return
        reader.assign(list(remaining))
        nexts = {tp: start for tp, (start, _) in remaining.items()}
        for tp, start in nexts.items():
            reader.seek(tp, start)
        quiet_since = time.monotonic()
        while remaining:
            try:
                polled = await reader.getmany(*remaining, timeout_ms=500, max_records=size)
            except OffsetOutOfRangeError:
                raise DlqError(
                    f"{self.topic}: records were deleted (retention) while read"
                ) from None
            except Exception as error:
                log.warning("%s: polling failed: %s", self.topic, safe_text(str(error), 300))
                for tp in remaining:
                    reader.seek(tp, nexts[tp])
                polled = await salvage.salvage(reader, {tp: nexts[tp] for tp in remaining})
            if polled:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.settings.request_timeout:
                raise DlqError(
                    f"{self.topic}: no records from Kafka for {self.settings.request_timeout:.0f}s"
                )
            batch = _within(polled, remaining)
            for record in batch:
                nexts[TopicPartition(record.topic, record.partition)] = record.offset + 1
            for tp in list(remaining):
                if await reader.position(tp) >= remaining[tp][1]:
                    del remaining[tp]
            if batch:
                yield [found(record) for record in batch]


def _within(
    polled: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    remaining: dict[TopicPartition, tuple[int, int]],
) -> list[ConsumedRecord]:
    return [
        from_aiokafka(message)
        for tp, messages in polled.items()
        if tp in remaining
        for message in messages
        if message.offset < remaining[tp][1]
    ]
