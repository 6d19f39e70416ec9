"""What both engines share: the handler routing and the loop that applies one batch.

`BatchLoop.apply` retries a batch while Postgres or Kafka is unavailable (an `Outage`),
with backoff, until it applies or the worker stops. Every other failure is narrowed
down and dead-lettered inside `BatchApplier`, so nothing a producer writes can make it
retry forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from operator import itemgetter

import asyncpg

from cronstream.config.settings import Settings
from cronstream.events.envelope import new_trace_id
from cronstream.handlers.applier import BatchApplier
from cronstream.handlers.failures import is_outage
from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import ConsumedRecord
from cronstream.handlers.registry import Handler, Registry, Router
from cronstream.kafka.structs import PartitionKey
from cronstream.pg import connections
from cronstream.runtime import metrics
from cronstream.runtime.logs import trace
from cronstream.runtime.retry import RetryPolicy, pause
from cronstream.runtime.untrusted import safe_text
from cronstream.streams.deadletter import DeadLetterProducer

log = logging.getLogger(__name__)

MAX_TRACE_IDS = 20  # listed in a "batch applied" line; a batch may hold thousands
_TOPIC = itemgetter(0)  # a record's topic, as a C-level getter for counting a batch by topic


def router(settings: Settings, registry: Registry) -> Router:
    """Registered handlers by type; the registry's fallback (the projection) for external
    change events of types with no handler of their own."""
    external = set(settings.external_topics)

    def route(topic: str, event_type: str) -> Handler | None:
        handler = registry.get(event_type)
        if handler is None and topic in external:
            return registry.external_fallback
        return handler

    return route


class BatchLoop:
    """One worker's Postgres connection, dead-letter producer and outage retry loop."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        stopping: asyncio.Event,
        *,
        consumer: str | None = None,
        route: Router | None = None,
        reapply_through: Mapping[PartitionKey, int] | None = None,
        replay_id: int | None = None,
        dlq_topic: Callable[[str], str] | None = None,
    ) -> None:
        """The keyword arguments are a replay's (streams/replay/): its consumer, routing,
        re-applied range, id (its positions are recorded under it) and dead-letter topics."""
        self.settings = settings
        self.stopping = stopping
        consumer = consumer or settings.consumer_group
        dlq_topic = dlq_topic or settings.dlq_topic
        self.dead_letters = DeadLetterProducer(settings, consumer, dlq_topic)
        self.applier = BatchApplier(
            consumer=consumer,
            route=route or router(settings, registry),
            dead_letter=self.dead_letters,
            dlq_topic=dlq_topic,
            retry=RetryPolicy(
                settings.handler_attempts, settings.retry_backoff, settings.retry_backoff_max
            ),
            handler_timeout=settings.handler_timeout,
            reapply_through=reapply_through,
            formats=settings.external_topics,
            replay_id=replay_id,
        )
        self.connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        await self.dead_letters.start()

    async def stop(self) -> None:
        await self.dead_letters.stop()
        if self.connection is not None:
            await self.connection.close(timeout=5)

    async def _connection(self) -> asyncpg.Connection:
        if self.connection is None or self.connection.is_closed():
            bounds = connections.session_settings(
                self.settings, f"cronstream worker {self.settings.consumer_group}"
            )
            self.connection = await connections.connect(self.settings, bounds)
        return self.connection

    def _drop_connection(self) -> None:
        if self.connection is not None:
            self.connection.terminate()
            self.connection = None

    async def apply(self, records: Sequence[ConsumedRecord]) -> Outcome | None:
        """Apply a batch, retrying outages; None when the worker stopped first.

        The batch gets a trace id of its own: every line logged while it is applied
        (retries, narrowing, handlers given events of different traces) carries it."""
        batch_trace = new_trace_id()
        with trace(batch_trace):
            outcome = await self._apply_retrying(records)
        if outcome is not None:
            outcome.trace_id = batch_trace
        return outcome

    async def _apply_retrying(self, records: Sequence[ConsumedRecord]) -> Outcome | None:
        metrics.count_consumed(Counter(map(_TOPIC, records)))  # counted in C, not in Python
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                outcome = await self.applier.apply(await self._connection(), records)
            except Exception as error:
                attempt += 1
                delay = self.applier.retry.delay(attempt)
                outage = is_outage(error)
                # Anything but an outage is a bug here (the applier narrows record
                # failures itself): say so with its traceback, and still lose nothing.
                log.log(
                    logging.WARNING if outage else logging.ERROR,
                    "batch of %d not applied, retrying in %.1fs: %s: %s",
                    len(records),
                    delay,
                    type(error).__name__,
                    safe_text(str(error), 500),
                    exc_info=not outage,
                )
                self._drop_connection()
                if await pause(delay, self.stopping):
                    continue
                return None
            metrics.count_batch(
                len(records),
                outcome.applied_by_topic,
                outcome.duplicates_by_topic,
                Counter(letter.record.topic for letter in outcome.dead_letters),
                time.monotonic() - started,
            )
            return outcome


async def settle(
    batch: asyncio.Future[Outcome | None], stopping: asyncio.Event, grace: float
) -> Outcome | None:
    """The batch's outcome; once `stopping` is set it gets `grace` seconds more and is then
    cancelled (rolled back: whoever reads the partition next applies it), so a stopping
    process exits in time. None when abandoned or stopped while Postgres was away."""
    stopped: asyncio.Future[object] = asyncio.ensure_future(stopping.wait())
    either: set[asyncio.Future[object]] = {batch, stopped}  # type: ignore[arg-type]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if batch.done():
        return batch.result()
    try:
        return await asyncio.wait_for(batch, grace)
    except TimeoutError:  # wait_for cancelled it
        log.warning("in-flight batch abandoned at shutdown, rolled back")
        return None


def log_batch(records: int, outcome: Outcome) -> None:
    """The batch's line: its counts, its own trace id and the events' (the first
    MAX_TRACE_IDS of them, with how many more), so a trace can be followed to it."""
    traced: dict[str, object] = {}
    if outcome.trace_ids:
        listed = list(islice(outcome.trace_ids, MAX_TRACE_IDS))
        traced["trace_ids"] = listed
        if len(outcome.trace_ids) > len(listed):
            traced["trace_ids_more"] = len(outcome.trace_ids) - len(listed)
    log.info(
        "batch applied: %d records, %d applied, %d duplicates, %d dead-lettered",
        records,
        outcome.applied,
        outcome.duplicates,
        len(outcome.dead_letters),
        extra={
            "events": records,
            "applied": outcome.applied,
            "duplicates": outcome.duplicates,
            "dead_lettered": len(outcome.dead_letters),
            "without_event": outcome.without_event,  # Debezium tombstones
            "trace_id": outcome.trace_id,
            **traced,
        },
    )
