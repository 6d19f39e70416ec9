"""CPU per event of applying polls, without Kafka: cronstream's batch path against a
hand-written json.loads + newest-per-key upsert loop, both into a real Postgres.

Both arms get the same aiokafka records (the benchmark's ~200-byte envelopes, with the
headers `cronstream publish` writes) in polls of 2,000 across the topic's partitions,
and apply each poll in one transaction with its checkpoints. The cronstream arm runs
`BatchLoop.apply`, as the batch engine calls it; neither arm includes fetching.

    python -m bench.decode_cpu [--events 200000] [--arm both|cronstream|handwritten] [--no-pg]

With --no-pg, both arms talk to a stand-in connection that takes every statement
without encoding its arguments: Python's share alone, without asyncpg and the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import SecretStr

from bench import loops
from bench.common import fresh_database, workload
from cronstream.config.settings import Settings
from cronstream.handlers import projection
from cronstream.handlers.records import from_aiokafka
from cronstream.handlers.registry import Registry
from cronstream.streams.batches import BatchLoop

POLL = 2000
TOPIC = "bench.decode"

Poll = dict[int, list[ConsumerRecord[bytes, bytes]]]


class NoPostgres:
    """A connection that takes every statement, and holds checkpoints at -1."""

    def __init__(self) -> None:
        self.transaction = contextlib.nullcontext  # supports `async with` since 3.10

    def is_closed(self) -> bool:
        return False

    async def execute(self, *args: Any) -> str:
        return ""

    async def fetch(self, sql: str, consumer: str, topics: list[str], partitions: list[int]) -> Any:
        return [
            {"topic": t, "partition": p, "offset": -1}
            for t, p in zip(topics, partitions, strict=True)
        ]

    async def close(self, **options: Any) -> None:
        pass


NO_PG = False  # set from --no-pg


async def connect(url: str) -> Any:
    return NoPostgres() if NO_PG else await asyncpg.connect(url)


class Clock:
    """CPU and wall time from the second poll on: the first one connects and prepares."""

    def start(self, index: int) -> None:
        if index == 1:
            self.wall, self.cpu = time.perf_counter(), time.process_time()


def polls(n: int, partitions: int) -> list[Poll]:
    """The workload as aiokafka returns it: polls of POLL records, by partition."""
    by_partition: list[list[ConsumerRecord[bytes, bytes]]] = [[] for _ in range(partitions)]
    for event in workload(n, keys=max(n // 2, 1)):
        key = event.kafka_key
        partition = hash(key) % partitions
        records = by_partition[partition]
        value = event.encode()
        records.append(
            ConsumerRecord(
                TOPIC, partition, len(records), 0, 0, key, value, None, len(key), len(value),
                tuple(event.kafka_headers),
            )
        )  # fmt: skip
    cursors = [0] * partitions
    result: list[Poll] = []
    while any(cursor < len(records) for cursor, records in zip(cursors, by_partition, strict=True)):
        poll: Poll = {}
        room = POLL
        for partition, records in enumerate(by_partition):
            taken = records[cursors[partition] : cursors[partition] + room // partitions + 1]
            if taken:
                poll[partition] = taken
                cursors[partition] += len(taken)
                room -= len(taken)
        result.append(poll)
    return result


async def cronstream_arm(settings: Settings, url: str, work: list[Poll], clock: Clock) -> None:
    registry = Registry()
    projection.register(registry)
    own = settings.model_copy(update={"database_url": SecretStr(url)})
    batches = BatchLoop(own, registry, asyncio.Event())
    if NO_PG:
        batches.connection = NoPostgres()
    try:
        for index, poll in enumerate(work):
            clock.start(index)
            records = [from_aiokafka(m) for messages in poll.values() for m in messages]
            outcome = await batches.apply(records)
            assert outcome is not None and not outcome.dead_letters, outcome
    finally:
        await batches.stop()


async def handwritten_arm(settings: Settings, url: str, work: list[Poll], clock: Clock) -> None:
    connection = await connect(url)
    try:
        for index, poll in enumerate(work):
            clock.start(index)
            events = [json.loads(r.value) for records in poll.values() for r in records]
            async with connection.transaction():
                await loops.upsert(connection, events)
                await connection.execute(
                    loops.CHECKPOINT_UPSERT,
                    "handwritten",
                    TOPIC,
                    list(poll),
                    [records[-1].offset for records in poll.values()],
                )
    finally:
        await connection.close()


async def measure(
    name: str,
    arm: Callable[[Settings, str, list[Poll], Clock], Awaitable[None]],
    work: list[Poll],
) -> float:
    settings = Settings()
    n = sum(len(records) for poll in work[1:] for records in poll.values())
    clock = Clock()
    async with fresh_database(settings) as url:
        await arm(settings, url, work, clock)
        cpu, wall = time.process_time() - clock.cpu, time.perf_counter() - clock.wall
    per_event = cpu / n * 1e6
    print(f"{name:12s} {n} events: {per_event:6.2f} us CPU/event, {wall:6.2f} s wall")
    return per_event


async def main(n: int, arm: str) -> None:
    work = polls(n, Settings().topic_partitions)
    # The records wait in memory here, not in Kafka: kept out of the garbage collector's
    # passes, which would otherwise walk them all, and charge each arm for its allocations.
    gc.freeze()
    results: dict[str, Any] = {}
    if arm in ("both", "handwritten"):
        results["handwritten"] = await measure("handwritten", handwritten_arm, work)
    if arm in ("both", "cronstream"):
        results["cronstream"] = await measure("cronstream", cronstream_arm, work)
    if len(results) == 2:
        print(f"cronstream / handwritten CPU: {results['cronstream'] / results['handwritten']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--arm", choices=["both", "cronstream", "handwritten"], default="both")
    parser.add_argument("--no-pg", action="store_true", help="a stand-in connection")
    options = parser.parse_args()
    NO_PG = options.no_pg
    asyncio.run(main(options.events, options.arm))
