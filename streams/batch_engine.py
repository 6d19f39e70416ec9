"""The batch engine (the default): an aiokafka consumer applying whole polls as batches.

This is the "store offsets outside Kafka" pattern of Kafka's consumer documentation:
- auto-commit is off and Postgres checkpoints are the truth. On every assignment, each
  partition with a checkpoint is sought to checkpoint + 1; Kafka's committed offset is
  only a hint, for monitoring tools and for partitions without a checkpoint.
- a batch is what one `getmany` returns, at most `batch_size` records: large while the
  worker is behind, small once it has caught up, so neither throughput nor latency
  needs tuning.
- after the Postgres COMMIT, offsets (checkpoint + 1) are committed to Kafka for the
  partitions still assigned, at most every `KAFKA_COMMIT_INTERVAL` seconds and on
  revocation and shutdown. A failed Kafka commit is logged, never fatal: nothing
  depends on it.
- on revocation the listener waits, bounded, for the in-flight batch. Should it still
  run after the partitions moved, the checkpoint row locks fence it against the new
  owner, which then drops what it applied as duplicates.

aiokafka facts it is built around (0.14): the listener's callbacks run in the group
coordinator's task while `getmany` may be waiting; an exception raised in
`on_partitions_assigned` is logged and swallowed, and heartbeats stop while it runs;
the new assignment is fetching from Kafka's committed offset before it is called. So
the callback only notes the partitions, the main loop applies none of their records
until it has sought them to their checkpoints, and a `seek` discards what was fetched
before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from cronstream.config.settings import Settings
from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import from_aiokafka
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients, health, metadata, salvage
from cronstream.pg import connections
from cronstream.runtime import metrics, shutdown
from cronstream.streams.batches import BatchLoop, log_batch, settle
from cronstream.streams.positions import (
    OffsetGaps,
    PollFailures,
    read_checkpoints,
    report_ahead,
    seek_start,
)

log = logging.getLogger(__name__)

KAFKA_COMMIT_INTERVAL = 1.0
# Reading positions for the lag gauge never holds up the loop longer than this.
LAG_READ_TIMEOUT = 0.05
# How long the broker may hold a fetch that finds nothing new. aiokafka keeps one fetch
# per broker in flight and leaves out partitions whose records wait in its buffer, so
# while the worker applies a batch the next fetch may name only idle partitions (an
# idle sync topic beside a busy external one): at aiokafka's 500 ms, every batch then
# waited half a second for it (the bench's Debezium and envelope_external arms ran at
# a third of their speed).
FETCH_MAX_WAIT_MS = 50


class BatchEngine:
    """One worker: consume, apply under the checkpoint protocol, commit to Kafka after."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.batches = BatchLoop(settings, registry, self.stopping)
        self.consumer: AIOKafkaConsumer | None = None
        self.inflight: asyncio.Future[Outcome | None] | None = None
        # Assigned partitions not yet sought to their checkpoint: their records are not
        # applied, whatever the fetcher already returned for them.
        self.unpositioned: set[TopicPartition] = set()
        self.uncommitted: dict[TopicPartition, int] = {}
        self.gaps = OffsetGaps()
        self.poll_failures = PollFailures(
            log,
            "polling Kafka failed: %s; every assigned partition goes back to its checkpoint + 1",
        )
        self.last_commit = time.monotonic()

    def _consumer(self) -> AIOKafkaConsumer:
        settings = self.settings
        session_ms = int(settings.session_timeout * 1000)
        return AIOKafkaConsumer(
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 5, 500),
            rebalance_timeout_ms=max(session_ms * 2, 20_000),
            max_poll_records=settings.batch_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            group_instance_id=settings.worker_id,
            **clients.connection_options(settings),
        )

    async def run(self) -> None:
        """Consume and apply until `stopping` is set; then drain, commit and leave the group."""
        await self.batches.start()
        consumer = self.consumer = self._consumer()
        watching = asyncio.create_task(
            health.watch(self.settings.kafka_bootstrap, lambda change: outage(consumer, change))
        )
        try:
            await consumer.start()
            consumer.subscribe(self.settings.input_topics, listener=_Listener(self))
            while not self.stopping.is_set():
                await self._poll_and_apply(consumer)
            await self._commit(consumer)
        finally:
            await shutdown.cancel_and_wait(watching)
            await consumer.stop()  # leaves the group: the others rebalance at once
            await self.batches.stop()

    async def _poll_and_apply(self, consumer: AIOKafkaConsumer) -> None:
        if self.unpositioned:
            await self.position(consumer)
        try:
            polled = await consumer.getmany(
                timeout_ms=int(self.settings.batch_max_wait * 1000),
                max_records=self.settings.batch_size,
            )
            self.poll_failures.cleared()
        except Exception as error:
            polled = await self._recover(consumer, error)
        await self._record_lag(consumer)
        assigned = consumer.assignment()
        # Revoked while this poll was on its way, or fetched before the seek to the
        # checkpoint (from Kafka's committed offset, which may be ahead): not applied.
        polled = {
            tp: messages
            for tp, messages in polled.items()
            if messages and tp in assigned and tp not in self.unpositioned
        }
        self.gaps.count(polled)
        records = [from_aiokafka(message) for messages in polled.values() for message in messages]
        if records:
            self.inflight = asyncio.ensure_future(self.batches.apply(records))
            try:
                grace = self.settings.shutdown_timeout / 2
                outcome = await settle(self.inflight, self.stopping, grace)
            finally:
                self.inflight = None
            if outcome is None:  # stopped while Postgres or Kafka was away
                return
            log_batch(len(records), outcome)
            for (topic, partition), checkpoint in outcome.checkpoints.items():
                self.uncommitted[TopicPartition(topic, partition)] = checkpoint + 1
        if time.monotonic() - self.last_commit >= KAFKA_COMMIT_INTERVAL:
            await self._commit(consumer)

    async def _recover(
        self, consumer: AIOKafkaConsumer, error: Exception
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """After a failed poll: every assigned partition back to its checkpoint + 1 (the
        poll may have taken other partitions' records out of aiokafka's buffer and moved
        their positions), then the records aiokafka cannot parse, read by kafka_salvage
        with those before them, for the caller to apply as a poll."""
        self.poll_failures.failed(error)
        self.unpositioned |= consumer.assignment()
        await self.position(consumer)
        try:
            positioned = consumer.assignment() - self.unpositioned  # Postgres may be away
            positions = {tp: await consumer.position(tp) for tp in positioned}
            salvaged = await salvage.salvage(consumer, positions)
        except (KafkaError, IllegalStateError) as trouble:  # revoked, or Kafka away
            log.warning("reading the partitions after the failed poll failed: %r", trouble)
            salvaged = {}
        for tp in salvaged:
            metrics.UNREADABLE_RECORDS.labels(tp.topic).inc()
        if not salvaged:  # not a record's fault: Kafka gets a moment before the next poll
            await asyncio.sleep(min(self.settings.retry_backoff_max, 1.0))
        return salvaged

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Set each positioned partition's lag: the log end Kafka reported with the last
        fetch (aiokafka's highwater) minus the next offset this worker reads."""
        try:
            async with asyncio.timeout(LAG_READ_TIMEOUT):
                for tp in consumer.assignment() - self.unpositioned:
                    end = consumer.highwater(tp)
                    if end is not None:  # nothing fetched for it yet
                        lag = max(end - await consumer.position(tp), 0)
                        metrics.CONSUMER_LAG.labels(tp.topic, tp.partition).set(lag)
        except (TimeoutError, IllegalStateError, AssertionError):
            # An offset reset pending, or revoked meanwhile: the next poll sets it.
            pass

    async def _commit(
        self, consumer: AIOKafkaConsumer, only: Iterable[TopicPartition] = ()
    ) -> None:
        """Commit applied offsets to Kafka for partitions still assigned (or `only` those)."""
        self.last_commit = time.monotonic()
        chosen = set(only) or set(self.uncommitted)
        offsets = {tp: self.uncommitted.pop(tp) for tp in chosen if tp in self.uncommitted}
        offsets = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as error:
            # Only a hint for monitoring tools: the checkpoints already hold the truth.
            log.warning("Kafka offset commit failed (checkpoints are safe): %r", error)

    def readiness(self) -> str | None:
        """None once partitions are assigned and all positioned at their checkpoints,
        else why not (GET /readyz, cronstream/web/health.py)."""
        assigned = self.consumer.assignment() if self.consumer is not None else set()
        if not assigned:
            return "no partitions assigned yet (or more workers than partitions)"
        if self.unpositioned:
            return (
                f"{len(self.unpositioned)} of {len(assigned)} assigned partition(s) not yet "
                "positioned at their checkpoints"
            )
        return None

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Called back on assignment: nothing of these is applied until positioned.

        Only bookkeeping here: aiokafka stops heartbeats while the callback runs, and
        Postgres may be slow or away; the main loop positions them before its next poll.
        """
        self.unpositioned.update(partitions)

    async def position(self, consumer: AIOKafkaConsumer) -> None:
        """Seek each unpositioned partition: to checkpoint + 1 where there is one, else to
        Kafka's committed offset, else to the beginning."""
        try:
            checkpoints = await read_checkpoints(self.settings)
        except connections.DatabaseUnavailable as error:
            # Starting without them could skip events never applied: wait for Postgres.
            log.warning("partitions wait for their checkpoints to be readable: %s", error)
            await asyncio.sleep(min(self.settings.retry_backoff_max, 1.0))
            return
        for tp in sorted(self.unpositioned):
            checkpoint = checkpoints.get((tp.topic, tp.partition))
            try:
                committed: int | None = await consumer.committed(tp)
            except KafkaError as error:
                log.warning("cannot read Kafka's committed offset of %s yet: %r", tp, error)
                continue  # stays unpositioned; tried again before the next poll
            if tp not in consumer.assignment():  # revoked while we read
                self.unpositioned.discard(tp)
                continue
            if checkpoint is not None:
                if committed is not None and committed > checkpoint + 1:
                    report_ahead(tp.topic, tp.partition, committed, checkpoint)
                log.info(
                    "%s[%d] starts at checkpoint + 1 = %d (Kafka committed %s)",
                    tp.topic,
                    tp.partition,
                    checkpoint + 1,
                    committed,
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "checkpoint": checkpoint,
                        "kafka_committed": committed,
                    },
                )
                self.gaps.expected[tp] = checkpoint + 1
            # Records fetched before this point are discarded: it starts where it must.
            await seek_start(consumer, tp, checkpoint, committed)
            self.unpositioned.discard(tp)

    async def wait_for_inflight(self, revoked: set[TopicPartition]) -> None:
        """Let the in-flight batch commit or roll back (bounded), then commit its offsets."""
        inflight = self.inflight
        if inflight is not None:
            bound = max(self.settings.session_timeout, 1.0)
            try:
                await asyncio.wait_for(asyncio.shield(inflight), bound)
            except TimeoutError:
                log.warning(
                    "in-flight batch still running after %.0fs; handing partitions over "
                    "(the checkpoint row locks fence it)",
                    bound,
                )
            except Exception:  # BatchLoop.apply logs its own failures
                pass
        if self.consumer is not None and revoked:
            await self._commit(self.consumer, only=revoked)
        self.unpositioned -= revoked
        for tp in revoked:
            metrics.forget_partition(tp.topic, tp.partition)
            self.gaps.expected.pop(tp, None)


def outage(
    consumer: AIOKafkaConsumer, change: health.Degraded
) -> tuple[list[str], list[str] | None]:
    """The "Kafka degraded" line's brokers and the assigned partitions that wait for them."""
    brokers, waiting = metadata.unreachable(consumer, change.nodes, change.addresses)
    return brokers, [f"{tp.topic}[{tp.partition}]" for tp in waiting]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.engine.wait_for_inflight(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.engine.assigned(assigned)
