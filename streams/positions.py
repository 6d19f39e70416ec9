"""Where each assigned partition starts: its Postgres checkpoint + 1, read from Postgres.

Both engines use this after every rebalance. Kafka's committed offset is only a hint;
should it be ahead of checkpoint + 1 (an operator's offset reset, a restored database,
a bug), the events in between were never applied, and starting there would skip them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from cronstream.config.settings import Settings
from cronstream.handlers.sql import query
from cronstream.kafka.structs import NamedPartition, PartitionKey
from cronstream.pg import connections
from cronstream.runtime import metrics
from cronstream.runtime.untrusted import safe_text

log = logging.getLogger(__name__)


TP = TypeVar("TP", bound=NamedPartition)  # aiokafka's TopicPartition or faust's TP


def rewinds(committed: Mapping[TP, int | None], done: Mapping[PartitionKey, int]) -> dict[TP, int]:
    """Partitions whose committed offset is beyond checkpoint + 1, and where to go back to."""
    back: dict[TP, int] = {}
    for tp, offset in committed.items():
        checkpoint = done.get((tp.topic, tp.partition))
        if checkpoint is not None and offset is not None and offset > checkpoint + 1:
            back[tp] = checkpoint + 1
    return back


def report_ahead(topic: str, partition: int, committed: int, checkpoint: int) -> None:
    log.error(
        "%s[%d]: Kafka's committed offset %d is ahead of the Postgres checkpoint %d: "
        "events in between were never applied; seeking back to %d",
        topic,
        partition,
        committed,
        checkpoint,
        checkpoint + 1,
    )


async def seek_start(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    checkpoint: int | None,
    committed: int | None,
) -> None:
    """Seek to checkpoint + 1 where there is one, else to Kafka's committed offset, else
    to the beginning. Every branch seeks: records fetched before are discarded."""
    if checkpoint is not None:
        consumer.seek(tp, checkpoint + 1)
    elif committed is not None:
        consumer.seek(tp, committed)
    else:
        await consumer.seek_to_beginning(tp)


async def read_checkpoints(settings: Settings) -> dict[PartitionKey, int]:
    async with connections.connection(settings) as connection:
        rows = await connection.fetch(query("checkpoints_of_consumer"), settings.consumer_group)
    return {(row["topic"], row["partition"]): row["offset"] for row in rows}


async def read_checkpoints_patiently(settings: Settings) -> dict[PartitionKey, int]:
    """The checkpoints, retried while Postgres is unavailable.

    Going on without them could start a partition past events never applied, and
    later batches would move the checkpoint beyond them for good. So after
    `request_timeout` seconds this raises, and the assignment fails loudly instead.
    """
    deadline = time.monotonic() + settings.request_timeout
    delay = 0.2
    while True:
        try:
            return await read_checkpoints(settings)
        except connections.DatabaseUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("cannot read checkpoints yet, retrying: %s", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class PollFailures:
    """A failed poll's error, said on `logger` once (not once a second while it lasts),
    and again when it changes or after a poll succeeded. After a failed poll the
    partitions go back: every engine says where in `says`."""

    def __init__(self, logger: logging.Logger, says: str) -> None:
        self.logger = logger
        self.says = says  # its last %s is the error
        self.last: str | None = None

    def failed(self, error: BaseException, *args: object) -> None:
        failure = f"{type(error).__name__}: {error}"
        if failure != self.last:
            self.logger.error(self.says, *args, safe_text(failure, 500))
            self.last = failure

    def cleared(self) -> None:
        self.last = None


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


class OffsetGaps:
    """Polls that resume past where a partition should be (its checkpoint + 1, else after
    its last record): compaction, transaction markers or retention skip offsets. Each is
    counted in cronstream_offset_gaps_total and said, at WARNING once per partition."""

    def __init__(self) -> None:
        # Where each partition's next record should be (checkpoint + 1), to count gaps.
        self.expected: dict[TopicPartition, int] = {}
        self.gapped: set[TopicPartition] = set()  # said at WARNING once each

    def count(self, polled: Mapping[TopicPartition, Sequence[HasOffset]]) -> None:
        """Count (and say, once per partition) a poll (or, in the faust engine, a batch)
        that starts past checkpoint + 1."""
        for tp, messages in polled.items():
            expected = self.expected.get(tp)
            first = messages[0].offset
            if expected is not None and first > expected:
                metrics.OFFSET_GAPS.labels(tp.topic).inc()
                level = logging.INFO if tp in self.gapped else logging.WARNING
                self.gapped.add(tp)
                log.log(
                    level,
                    "%s[%d]: records resume at %d, checkpoint + 1 is %d (compaction, "
                    "transaction markers or retention skip offsets; counted in "
                    "cronstream_offset_gaps_total)",
                    tp.topic,
                    tp.partition,
                    first,
                    expected,
                )
            self.expected[tp] = messages[-1].offset + 1
