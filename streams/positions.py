"""Where each assigned partition starts: its Postgres checkpoint + 1, read from Postgres.

Both engines use this after every rebalance. Kafka's committed offset is only a hint;
should it be ahead of checkpoint + 1 (an operator's offset reset, a restored database,
a bug), the events in between were never applied, and starting there would skip them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol, TypeVar

from cronstream.config.settings import Settings
from cronstream.handlers.sql import query
from cronstream.pg import connections

log = logging.getLogger(__name__)


class _TopicPartition(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...


TP = TypeVar("TP", bound=_TopicPartition)  # aiokafka's TopicPartition or faust's TP


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


async def read_checkpoints(settings: Settings) -> dict[tuple[str, int], int]:
    async with connections.connection(settings) as connection:
        rows = await connection.fetch(query("checkpoints_of_consumer"), settings.consumer_group)
    return {(row["topic"], row["partition"]): row["offset"] for row in rows}


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
        except connections.DatabaseUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("cannot read checkpoints yet, retrying: %s", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
