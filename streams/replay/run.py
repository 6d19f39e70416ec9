"""A replay's run: the audit row, then the reading loop feeding batches through the
worker's `BatchLoop` until every partition of the plan reached its last offset."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from cronstream.config.settings import Settings
from cronstream.handlers.failures import is_outage
from cronstream.handlers.records import ConsumedRecord, from_aiokafka
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients, salvage
from cronstream.pg import connections
from cronstream.runtime.retry import pause
from cronstream.runtime.untrusted import safe_text
from cronstream.streams.batches import BatchLoop, router, settle
from cronstream.streams.positions import PollFailures
from cronstream.streams.replay.audit import Audit
from cronstream.streams.replay.plan import Plan
from cronstream.streams.replay.progress import Progress
from cronstream.streams.replay.rebuild import in_schema, rebuild_dlq_topic
from cronstream.streams.replay.request import ReplayError

log = logging.getLogger(__name__)


class Replay:
    """One real replay of a plan: the audit row, the reading loop, the batches."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        plan: Plan,
        handlers: Sequence[str],
        stopping: asyncio.Event,
        on_progress: Callable[[Progress], None] = lambda progress: None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.plan = plan
        self.handlers = list(handlers)
        self.stopping = stopping
        self.on_progress = on_progress
        self.dlq_topic: Callable[[str], str] = settings.dlq_topic
        if plan.request.mode == "rebuild":
            self.dlq_topic = rebuild_dlq_topic(settings, plan.consumer)
        self.progress = Progress(total=plan.total)
        self.audit: Audit | None = None
        self.poll_failures = PollFailures(
            log, "replay %s: polling Kafka failed: %s; its partitions go back to what was applied"
        )

    async def run(self) -> Progress:
        """Replay the plan; the Progress says how it ended (never raises for a failure
        once the audit row exists: the row and the result say it)."""
        request = self.plan.request
        audit = self.audit = Audit(self.settings, await connections.connect(self.settings))
        try:
            await clients.ensure_topics(self.settings, [self.dlq_topic(request.asked.topic)])
            self.progress.replay_id = await audit.start(self.plan, self.handlers)
            self.progress.started = time.monotonic()
            try:
                await self._read_and_apply(self._batches(self.progress.replay_id))
                if self.stopping.is_set() and self.progress.unfinished(self.plan):
                    self.progress.status = "interrupted"
            except Exception as error:  # recorded in the row, and shown by the caller
                # Kafka or Postgres gone for good is one line; anything else is a bug.
                log.error(
                    "replay %s failed: %s: %s",
                    self.progress.replay_id,
                    type(error).__name__,
                    safe_text(str(error), 500),
                    exc_info=not (is_outage(error) or isinstance(error, ReplayError)),
                )
                self.progress.status = "failed"
                self.progress.error = safe_text(f"{type(error).__name__}: {error}", 2000)
            await audit.finish(self.plan, self.progress)
        finally:
            await audit.close()
        return self.progress

    def _batches(self, replay_id: int) -> BatchLoop:
        """The worker's batch loop, under the replay's consumer, routing, id and
        dead-letter topic."""
        request = self.plan.request
        route = router(self.settings, self.registry)
        if request.schema is not None:
            route = in_schema(route, request.schema)
        # Re-apply: what each live checkpoint covered when the replay began is applied again.
        reapply = {(request.asked.topic, p.partition): p.checkpoint for p in self.plan.partitions}
        return BatchLoop(
            self.settings,
            self.registry,
            self.stopping,
            consumer=self.plan.consumer,
            route=route,
            reapply_through=reapply if request.mode == "re-apply" else {},
            replay_id=replay_id,
            dlq_topic=self.dlq_topic,
        )

    async def _read_and_apply(self, batches: BatchLoop) -> None:
        size = self.settings.batch_size
        if self.plan.request.asked.rate_limit is not None:  # batches of about a second
            size = max(1, min(size, math.ceil(self.plan.request.asked.rate_limit)))
        topic = self.plan.request.asked.topic
        remaining = {
            TopicPartition(topic, p.partition): p.offsets for p in self.plan.partitions if p.offsets
        }
        if not remaining:
            return
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            max_poll_records=size,
            # Records deleted under the replay (retention) are an error, never a silent
            # jump to the log end that would end the replay "succeeded".
            auto_offset_reset="none",
            **clients.connection_options(self.settings),
        )
        async with clients.started(batches), clients.started(consumer) as reader:
            reader.assign(list(remaining))
            for tp, offsets in remaining.items():
                reader.seek(tp, offsets.start)
            # Where each partition goes back to after a failed poll: past what was applied.
            nexts = {tp: offsets.start for tp, offsets in remaining.items()}
            quiet_since = time.monotonic()
            while remaining and not self.stopping.is_set():
                try:
                    polled = await reader.getmany(*remaining, timeout_ms=500, max_records=size)
                except OffsetOutOfRangeError as error:
                    lost = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in error.args[0])
                    raise ReplayError(
                        f"{lost}: records of the range were deleted (retention) before the "
                        "replay read them"
                    ) from None
                except Exception as error:
                    polled = await self._recover(reader, error, {tp: nexts[tp] for tp in remaining})
                else:
                    self.poll_failures.cleared()
                if polled:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > self.settings.request_timeout:
                    # aiokafka's own connection errors are held back (cronstream/kafka/health.py)
                    log.warning(
                        "replay waits: no records from Kafka for %.0fs (%d partition(s) left)",
                        self.settings.request_timeout,
                        len(remaining),
                    )
                    quiet_since = time.monotonic()
                records = [
                    from_aiokafka(message)
                    for tp, messages in polled.items()
                    if tp in remaining
                    for message in messages
                    if message.offset < remaining[tp].stop
                ]
                # Read to its last offset (or past it: a compacted log has gaps).
                finished = {
                    tp: remaining.pop(tp)
                    for tp in list(remaining)
                    if await reader.position(tp) >= remaining[tp].stop
                }
                reader.pause(*finished)
                if records and not await self._apply(batches, records):
                    return
                for record in records:  # in offset order per partition
                    nexts[TopicPartition(record.topic, record.partition)] = record.offset + 1
                for tp, offsets in finished.items():
                    self.progress.stopped[tp.partition] = offsets.stop - 1
                await self._keep_rate()

    async def _recover(
        self, reader: AIOKafkaConsumer, error: Exception, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """After a failed poll (which may have taken records out of aiokafka's buffer):
        every partition back to where this replay's applying got to, and the records
        aiokafka cannot parse, read by kafka_salvage with those before them."""
        self.poll_failures.failed(error, self.progress.replay_id)
        for tp, offset in positions.items():
            reader.seek(tp, offset)
        salvaged = await salvage.salvage(reader, positions)
        if not salvaged:  # not a record's fault: Kafka gets a moment
            await pause(1.0, self.stopping)
        return salvaged

    async def _apply(self, batches: BatchLoop, records: list[ConsumedRecord]) -> bool:
        """Apply one batch; False when stopped before it was applied (rolled back)."""
        batch = asyncio.ensure_future(batches.apply(records))
        outcome = await settle(batch, self.stopping, self.settings.shutdown_timeout / 2)
        if outcome is None:  # abandoned at the stop, or stopped while Postgres was away
            return False
        self.progress.add(records, outcome)
        self.on_progress(self.progress)
        assert self.audit is not None, "run() holds the audit row"
        await self.audit.record_progress(self.progress)
        return True

    async def _keep_rate(self) -> None:
        rate = self.plan.request.asked.rate_limit
        if rate is None:
            return
        ahead = self.progress.records / rate - self.progress.seconds
        if ahead > 0:
            await pause(ahead, self.stopping)  # the stop ends the wait early
