"""faust's consumer, made to start each assigned partition no later than its checkpoint.

After every rebalance faust seeks each partition to Kafka's committed offset itself,
overriding any seek made in a rebalance listener. So right after faust's seek, this
consumer reads the checkpoints, says so loudly where Kafka is ahead, and seeks those
partitions back to checkpoint + 1 (see streams/positions.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from cronstream.settings import Settings
from cronstream.streams.positions import read_checkpoints_patiently, report_ahead, rewinds


def checkpoint_consumer(settings: Settings) -> type[Consumer]:
    """The faust Consumer class for this worker's settings."""

    class CheckpointConsumer(Consumer):
        async def seek_to_committed(self) -> Mapping[TP, int]:
            committed: Mapping[TP, int] = await super().seek_to_committed()
            back = rewinds(committed, await read_checkpoints_patiently(settings))
            for tp, offset in back.items():
                report_ahead(tp.topic, tp.partition, committed[tp], offset - 1)
                await self._seek(tp, offset)
            return {**committed, **back}

    return CheckpointConsumer


def install(app: Any, settings: Settings) -> None:
    """Make `app` create its consumer from our class (before anything starts it)."""
    transport = app.transport
    transport.Consumer = checkpoint_consumer(settings)
