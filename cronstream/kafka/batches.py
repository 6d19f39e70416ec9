"""Records sent in batches of our own (aiokafka's create_batch and send_batch): one
delivery future per batch rather than one per record, which the producer's send() makes.

aiokafka's idempotent producer sends one request at a time to a broker, and queues at
most one batch per partition behind it: send_batch waits for the one before to be taken,
so the batches of a partition, and the records of a key, go in the order queued. A
batch is closed before it is queued, so no send() elsewhere adds a record to it.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

if TYPE_CHECKING:
    from cronstream.kafka.clients import Message

TopicPartition = tuple[str, int]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The Java client's murmur2 of a key (aiokafka's partitioner has it in pure Python,
    a byte at a time; this one reads words, about twice as fast): 32 unsigned bits."""
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:body]):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[body + 2] << 16
        if tail >= 2:
            h ^= data[body + 1] << 8
        h = ((h ^ data[body]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: list[int]) -> int:
    """Where the producer's default partitioner puts `key` among the sorted `partitions`."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Batches:
    """The open batch of each partition (a BatchBuilder and the indexes of its records
    in the caller's list), and the batches queued in the producer with their futures."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.open: dict[TopicPartition, tuple[Any, list[int]]] = {}
        self.queued: list[tuple[list[int], asyncio.Future[Any]]] = []
        self.partitions: dict[str, list[int]] = {}

    async def add(self, index: int, message: Message, headers: list[tuple[str, bytes]]) -> None:
        """Append a record to its partition's batch; a full batch is queued first."""
        topic, key = message.topic, message.key
        partitions = self.partitions.get(topic) or await self._partitions(topic)
        if key is None:
            tp = (topic, random.choice(partitions))  # as send() does: spreading load
        else:
            tp = (topic, partition_of(key, partitions))
        batch = self.open.get(tp) or self._new(tp)
        value = message.value
        if batch[0].append(timestamp=None, key=key, value=value, headers=headers) is None:
            await self._queue(tp)
            batch = self._new(tp)
            # A batch takes its first record whatever its size.
            batch[0].append(timestamp=None, key=key, value=value, headers=headers)
        batch[1].append(index)

    async def queue_all(self) -> None:
        """Queue every open batch."""
        for tp in list(self.open):
            await self._queue(tp)

    def queued_indexes(self) -> set[int]:
        return {index for indexes, _ in self.queued for index in indexes}

    def _new(self, tp: TopicPartition) -> tuple[Any, list[int]]:
        batch = self.open[tp] = (self.producer.create_batch(), [])
        return batch

    async def _queue(self, tp: TopicPartition) -> None:
        builder, indexes = self.open.pop(tp)
        builder.close()
        topic, partition = tp
        future = await self.producer.send_batch(builder, topic, partition=partition)
        self.queued.append((indexes, future))

    async def _partitions(self, topic: str) -> list[int]:
        """The topic's partitions, sorted as the producer's partitioner has them; waits
        for the topic's metadata, as send() does. The producer's send() picks murmur2 of
        the key among them, or a random one for a record without a key: so do we."""
        partitions = self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        return partitions
