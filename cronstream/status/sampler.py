"""The sampler: every CRONSTREAM_STATUS_SAMPLE_SECONDS, the consumer group's checkpoints
(Postgres) against its topics' log start and end (Kafka), into `Samples`.

It runs in the process serving the status page, and reads what every worker of the
group wrote, so it sees the group whole however many processes apply it. A partition
that stalls is logged once as a warning, and once more when it moves again, and
`cronstream_partition_stalled{topic,partition}` is 1 while it stands still.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.kafka import clients, metadata
from cronstream.pg import connections
from cronstream.runtime.metrics import PARTITION_STALLED
from cronstream.status.samples import Change, Key, Position, Samples
from cronstream.status.sql import query

log = logging.getLogger(__name__)

SAMPLE_TIMEOUT = 5.0  # seconds for one sample, Postgres and Kafka together
FAILURES = (TimeoutError, KafkaError, OSError, connections.DatabaseUnavailable)


class Sampler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.samples = Samples(settings.status_sample_seconds, settings.stall_seconds)
        self.failing = False
        self.reader: AIOKafkaConsumer | None = None  # started; the page reads with it too
        self.pool: asyncpg.Pool | None = None  # the page's too
        self.committed: dict[TopicPartition, int] | None = None  # of the last sample

    async def run(self) -> None:
        """Sample until cancelled; a sample that fails is logged once and tried again."""
        interval = self.settings.status_sample_seconds
        while True:
            try:
                self.pool = await connections.pool(self.settings, min_size=1, max_size=2)
                reader = AIOKafkaConsumer(**clients.connection_options(self.settings))
                async with clients.started(reader):
                    self.reader = reader
                    while True:
                        await self.sample(reader)
                        await asyncio.sleep(interval)
            except (*FAILURES, *connections.CONNECT_ERRORS) as error:
                if not self.failing:  # only the type: a message may name a server
                    log.warning("status samples paused: %s", type(error).__name__)
                self.failing = True
                await asyncio.sleep(interval)
            except Exception:  # a bug of ours: the page goes on without samples, said once
                if not self.failing:
                    log.exception("status samples failed")
                self.failing = True
                await asyncio.sleep(interval)
            finally:
                self.reader, self.committed = None, None
                if self.pool is not None:
                    self.pool.terminate()  # never waits on a server gone silent
                    self.pool = None

    async def sample(self, reader: AIOKafkaConsumer) -> None:
        async with asyncio.timeout(SAMPLE_TIMEOUT):
            positions = await self.positions(reader)
        if self.failing:
            log.info("status samples resumed")
            self.failing = False
        self.report(self.samples.add(time.time(), positions))

    async def positions(self, reader: AIOKafkaConsumer) -> dict[Key, Position]:
        settings = self.settings
        topics = settings.input_topics
        assert self.pool is not None  # opened by run()
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                query("status_group_checkpoints"), settings.consumer_group, topics
            )
        done = {(row["topic"], row["partition"]): row["offset"] for row in rows}
        cluster = await metadata.cluster_metadata(reader)
        partitions = [
            TopicPartition(topic, number)
            for topic in topics
            for number in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        starts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
        unchecked = [
            tp
            for tp in partitions
            if (tp.topic, tp.partition) not in done and starts[tp] < ends[tp]
        ]
        committed = await metadata.committed(settings, settings.consumer_group, unchecked)
        self.committed = committed
        return {
            (tp.topic, tp.partition): Position(
                done.get((tp.topic, tp.partition)), starts[tp], ends[tp], committed.get(tp)
            )
            for tp in partitions
        }

    def report(self, changes: list[Change]) -> None:
        for change in changes:
            topic, partition = change.key
            PARTITION_STALLED.labels(topic, str(partition)).set(change.what == "stalled")
            fields = {
                "topic": topic,
                "partition": partition,
                "checkpoint": change.checkpoint,
                "lag": change.lag,
                "seconds": round(change.seconds),
            }
            if change.what == "stalled":
                log.warning(
                    "partition %s[%d] stalled: checkpoint %s has not moved for %.0fs, lag %d",
                    topic,
                    partition,
                    "none" if change.checkpoint is None else change.checkpoint,
                    change.seconds,
                    change.lag,
                    extra=fields,
                )
            else:
                log.info(
                    "partition %s[%d] moves again after %.0fs",
                    topic,
                    partition,
                    change.seconds,
                    extra=fields,
                )
