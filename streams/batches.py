"""What both engines share: the handler routing and the loop that applies one batch.

`BatchLoop.apply` retries a batch while Postgres or Kafka is unavailable (an `Outage`),
with backoff, until it applies or the worker stops. Every other failure is narrowed
down and dead-lettered inside `BatchApplier`, so nothing a producer writes can make it
retry forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from cronstream import db
from cronstream.settings import Settings
from cronstream.untrusted import safe_text
from handlers.checkpoints import BatchApplier, Outcome, Record, RetryPolicy, Router, is_outage
from handlers.projection import project
from handlers.registry import Handler, Registry
from streams.deadletter import DeadLetterProducer

log = logging.getLogger(__name__)

# Retries of an outage back off up to retry_backoff_max; the attempt count only grows
# the delay, so it is capped where the delay would be anyway.
MAX_BACKOFF_STEP = 16


def router(settings: Settings, registry: Registry) -> Router:
    """Registered handlers by type; the projection for unregistered external change events."""
    external = set(settings.external_topics)

    def route(topic: str, event_type: str) -> Handler | None:
        handler = registry.get(event_type)
        if handler is None and topic in external:
            return project
        return handler

    return route


def session_settings(settings: Settings) -> dict[str, str]:
    """Bounds on the worker's Postgres session: no lock or statement waits forever."""
    return {
        "lock_timeout": f"{int(settings.db_lock_timeout * 1000)}ms",
        "statement_timeout": f"{int(settings.db_statement_timeout * 1000)}ms",
        "application_name": f"cronstream worker {settings.consumer_group}"[:63],
    }


class BatchLoop:
    """One worker's Postgres connection, dead-letter producer and outage retry loop."""

    def __init__(self, settings: Settings, registry: Registry, stop: asyncio.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.dead_letters = DeadLetterProducer(settings)
        self.applier = BatchApplier(
            consumer=settings.consumer_group,
            route=router(settings, registry),
            dead_letter=self.dead_letters,
            dlq_topic=settings.dlq_topic,
            retry=RetryPolicy(
                settings.handler_attempts, settings.retry_backoff, settings.retry_backoff_max
            ),
            handler_timeout=settings.handler_timeout,
        )
        self.connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        await self.dead_letters.start()

    async def close(self) -> None:
        await self.dead_letters.stop()
        if self.connection is not None:
            await self.connection.close(timeout=5)

    async def _connection(self) -> asyncpg.Connection:
        if self.connection is None or self.connection.is_closed():
            self.connection = await db.connect(self.settings, session_settings(self.settings))
        return self.connection

    def _drop_connection(self) -> None:
        if self.connection is not None:
            self.connection.terminate()
            self.connection = None

    async def apply(self, records: Sequence[Record]) -> Outcome | None:
        """Apply a batch, retrying outages; None when the worker stopped first."""
        attempt = 0
        while True:
            try:
                return await self.applier.apply(await self._connection(), records)
            except Exception as error:
                attempt += 1
                delay = self.applier.retry.delay(min(attempt, MAX_BACKOFF_STEP))
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
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    continue
                return None


def log_batch(records: int, outcome: Outcome) -> None:
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
        },
    )
