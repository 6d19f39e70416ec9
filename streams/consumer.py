"""faust's consumer, made to start each assigned partition no later than its checkpoint.

After every rebalance faust seeks each partition to Kafka's committed offset. The
checkpoint protocol never lets that offset pass a partition's Postgres checkpoint + 1;
should it anyway (an operator's offset reset, a restored database, a bug), the events
in between would be skipped silently. So right after faust's seek, this consumer reads
the checkpoints, says so loudly, and seeks those partitions back to checkpoint + 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from cronstream import db
from cronstream.queries import query
from cronstream.settings import Settings

log = logging.getLogger(__name__)


def rewinds(
    committed: Mapping[TP, int | None], done: Mapping[tuple[str, int], int]
) -> dict[TP, int]:
    """Partitions whose committed offset is beyond checkpoint + 1, and where to go back to."""
    back: dict[TP, int] = {}
    for tp, offset in committed.items():
        checkpoint = done.get((tp.topic, tp.partition))
        if checkpoint is not None and offset is not None and offset > checkpoint + 1:
            back[tp] = checkpoint + 1
    return back


def checkpoint_consumer(settings: Settings) -> type[Consumer]:
    """The faust Consumer class for this worker's settings."""

    class CheckpointConsumer(Consumer):
        async def seek_to_committed(self) -> Mapping[TP, int]:
            committed: Mapping[TP, int] = await super().seek_to_committed()
            back = rewinds(committed, await read_checkpoints_patiently(settings))
            for tp, offset in back.items():
                log.error(
                    "%s[%d]: Kafka's committed offset %d is ahead of the Postgres checkpoint "
                    "%d: events in between were never applied; seeking back to %d",
                    tp.topic,
                    tp.partition,
                    committed[tp],
                    offset - 1,
                    offset,
                )
                await self._seek(tp, offset)
            return {**committed, **back}

    return CheckpointConsumer


async def read_checkpoints_patiently(settings: Settings) -> dict[tuple[str, int], int]:
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
        except db.DatabaseUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("cannot read checkpoints yet, retrying: %s", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def read_checkpoints(settings: Settings) -> dict[tuple[str, int], int]:
    connection = await db.connect(settings)
    try:
        rows = await connection.fetch(query("checkpoints_of_consumer"), settings.consumer_group)
    finally:
        await connection.close()
    return {(row["topic"], row["partition"]): row["offset"] for row in rows}


def install(app: Any, settings: Settings) -> None:
    """Make `app` create its consumer from our class (before anything starts it)."""
    transport = app.transport
    transport.Consumer = checkpoint_consumer(settings)
