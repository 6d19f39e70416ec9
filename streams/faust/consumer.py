"""faust's consumer, made to start each assigned partition no later than its checkpoint,
and to go back there after a failed poll.

After every rebalance faust seeks each partition to Kafka's committed offset itself,
overriding any seek made in a rebalance listener. So right after faust's seek, this
consumer reads the checkpoints, says so loudly where Kafka is ahead, and seeks those
partitions back to checkpoint + 1 (see streams/positions.py).

faust lets an exception out of a poll crash the worker, and a restarted one crashes on
the same record (aiokafka's parser raising on a header name that is not UTF-8). Here a
failed poll seeks every partition back the same way, and returns instead the records
that cronstream/kafka/salvage.py read byte for byte, for the agent to dead-letter. faust
drops what it delivered already (below its read offset per partition), so going back
redelivers only what the failed poll took out of aiokafka's buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from cronstream.config.settings import Settings
from cronstream.kafka import salvage
from cronstream.kafka.structs import PartitionKey
from cronstream.streams.positions import (
    OffsetGaps,
    PollFailures,
    read_checkpoints_patiently,
    report_ahead,
    rewinds,
    seek_start,
)

log = logging.getLogger(__name__)


def checkpoint_consumer(settings: Settings, gaps: OffsetGaps) -> type[Consumer]:
    """The faust Consumer class for this worker's settings; it tells `gaps` where each
    partition starts after a rebalance."""

    class CheckpointConsumer(Consumer):
        # One consumer per app, so one per class (made per app by `install`).
        poll_failures = PollFailures(
            log,
            "polling Kafka failed: %s; every assigned partition goes back to its checkpoint + 1",
        )

        async def seek_to_committed(self) -> Mapping[TP, int]:
            committed: Mapping[TP, int] = await super().seek_to_committed()
            back = rewinds(committed, await read_checkpoints_patiently(settings))
            for tp, offset in back.items():
                report_ahead(tp.topic, tp.partition, committed[tp], offset - 1)
                await self._seek(tp, offset)
            starts = {**committed, **back}
            for tp, offset in starts.items():
                if offset is not None and offset >= 0:
                    gaps.expected[TopicPartition(tp.topic, tp.partition)] = offset
            return starts

        async def _getmany(
            self,
            active_partitions: set[TP] | None,
            timeout: float,  # noqa: ASYNC109 (faust's signature)
        ) -> Mapping[TP, list[Any]]:
            try:
                polled: Mapping[TP, list[Any]] = await super()._getmany(active_partitions, timeout)
                self.poll_failures.cleared()
                return polled
            except (ConsumerNotStarted, ConsumerStoppedError):
                raise
            except Exception as error:
                self.poll_failures.failed(error)
            checkpoints = await read_checkpoints_patiently(settings)
            salvaged: Mapping[TP, list[Any]] = await self._thread.call_thread(
                self._salvage, checkpoints
            )
            if not salvaged:  # not a record's fault: Kafka gets a moment
                await self.sleep(1.0)
            return salvaged

        async def _salvage(
            self, checkpoints: Mapping[PartitionKey, int]
        ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
            """Every assigned partition back to checkpoint + 1 (else Kafka's committed
            offset, else the beginning), then what kafka_salvage reads there. In the
            consumer's thread, where its aiokafka client lives."""
            consumer: AIOKafkaConsumer = self._thread._ensure_consumer()
            for tp in consumer.assignment():
                checkpoint = checkpoints.get((tp.topic, tp.partition))
                committed = await consumer.committed(tp) if checkpoint is None else None
                await seek_start(consumer, tp, checkpoint, committed)
            positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
            return await salvage.salvage(consumer, positions)

    return CheckpointConsumer


def install(app: Any, settings: Settings, gaps: OffsetGaps) -> None:
    """Make `app` create its consumer from our class (before anything starts it)."""
    transport = app.transport
    transport.Consumer = checkpoint_consumer(settings, gaps)
