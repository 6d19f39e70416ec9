"""The consumed record: a Kafka record as the checkpoint protocol sees it, whatever
client consumed it (aiokafka in the batch engine and replay, faust in the faust engine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from aiokafka import ConsumerRecord

from cronstream.events.envelope import header_trace_id
from cronstream.kafka.structs import PartitionKey

RecordPosition = tuple[str, int, int]
"""(topic, partition, offset): where one record sits."""


class ConsumedRecord(NamedTuple):
    """A Kafka record as the protocol sees it, whatever client consumed it.

    A NamedTuple rather than a frozen dataclass: one is built per record consumed, and
    a tuple is several times cheaper to build."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def trace_id(self) -> str | None:
        return header_trace_id(self.headers)

    @property
    def position(self) -> RecordPosition:
        return (self.topic, self.partition, self.offset)


def consumed(message: Any, headers: Iterable[tuple[str, bytes | None]]) -> ConsumedRecord:
    """A record as a Kafka client consumed it (aiokafka's ConsumerRecord, faust's
    Message: the same attributes), with its headers as bytes."""
    return ConsumedRecord(
        message.topic,
        message.partition,
        message.offset,
        message.value,
        message.key,
        tuple((name, value or b"") for name, value in headers),  # a header may have no value
    )


def from_aiokafka(message: ConsumerRecord[bytes, bytes]) -> ConsumedRecord:
    """An aiokafka record (the batch engine's, a replay's) as the protocol sees it."""
    return consumed(message, message.headers or ())


def by_partition(records: Sequence[ConsumedRecord]) -> dict[PartitionKey, list[ConsumedRecord]]:
    """The records of each partition in offset order, the partitions in a fixed order."""
    partitions: dict[PartitionKey, list[ConsumedRecord]] = defaultdict(list)
    for record in records:
        partitions[(record.topic, record.partition)].append(record)
    return {key: sorted(recs, key=lambda r: r.offset) for key, recs in sorted(partitions.items())}
