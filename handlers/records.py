"""The consumed record: a Kafka record as the checkpoint protocol sees it, whatever
client consumed it (aiokafka in the batch engine and replay, faust in the faust engine).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from itertools import groupby
from operator import itemgetter
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
    given = tuple(headers)
    if None in map(_VALUE, given):  # a header may have no value
        given = tuple((name, value or b"") for name, value in given)
    return _record(
        (message.topic, message.partition, message.offset, message.value, message.key, given)
    )


def from_aiokafka(message: ConsumerRecord[bytes, bytes]) -> ConsumedRecord:
    """An aiokafka record (the batch engine's, a replay's) as the protocol sees it."""
    headers = message.headers
    if type(headers) is not tuple or None in map(_VALUE, headers):
        return consumed(message, headers or ())
    return _record(
        (message.topic, message.partition, message.offset, message.value, message.key, headers)
    )


POSITION = itemgetter(0, 1, 2)
"""A record's (topic, partition, offset), as a C-level sort key."""
_PARTITION = itemgetter(0, 1)
_VALUE = itemgetter(1)
# ConsumedRecord(...) without its Python-level __new__: one is built per record consumed.
_record = partial(tuple.__new__, ConsumedRecord)


def by_partition(records: Sequence[ConsumedRecord]) -> dict[PartitionKey, list[ConsumedRecord]]:
    """The records of each partition in offset order, the partitions in a fixed order."""
    return grouped(sorted(records, key=POSITION))


def grouped(ordered: Iterable[ConsumedRecord]) -> dict[PartitionKey, list[ConsumedRecord]]:
    """`by_partition` of records already in (topic, partition, offset) order."""
    return {key: list(run) for key, run in groupby(ordered, key=_PARTITION)}
