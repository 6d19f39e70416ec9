"""Value types for Kafka's coordinates, shared by every layer above this one.

aiokafka's `TopicPartition` (a NamedTuple) and faust's `TP` name a partition to their
clients; `PartitionKey` is the plain (topic, partition) pair cronstream keys its own
maps by (checkpoints, outcomes), whatever client the partition came from.
"""

from __future__ import annotations

from typing import Protocol

PartitionKey = tuple[str, int]
"""(topic, partition): a partition as cronstream keys it, apart from any client's class."""


class NamedPartition(Protocol):
    """A client's partition object: aiokafka's TopicPartition or faust's TP."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
