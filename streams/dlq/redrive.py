"""Re-driving dead letters: each applied again through the handlers once its cause is
fixed, exactly once, or recorded again with its new reason.

The unresolved `dead_letters` rows of the live consumer matching the filters are
selected; their dead-letter topics are read (streams/dlq/reading.py) and each letter
found for a selected row (the first copy: a crash can send a letter twice) is decoded
by its ORIGINAL topic's format (`dlq.original.topic` names it; the settings' external
topics give its format) and routed as the live worker routes it.

Per batch, in one transaction: the batch's rows are locked (`FOR UPDATE`) and those
already resolved dropped; the rest go through the same `Dispatcher` as the checkpoint
protocol (handlers/dispatch.py: savepoints, retries, timeouts); what fails again is
sent to the dead-letter topic and its row takes the new reason; what applied is marked
resolved by this redrive; the audit row's counters move. Effects, marks and counters
commit together, so a second redrive, or one running at the same time, applies nothing
twice: the resolved mark is the checkpoint of a dead letter. An outage fails the
redrive with its line; running it again takes up what is left.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from cronstream.config.settings import Settings
from cronstream.handlers.dead_letters import DeadLetterLedger
from cronstream.handlers.decoding import Decoders
from cronstream.handlers.dispatch import Dispatcher
from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import by_partition
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients
from cronstream.pg import connections
from cronstream.runtime.retry import RetryPolicy
from cronstream.runtime.untrusted import safe_text
from cronstream.streams.batches import router
from cronstream.streams.deadletter import DeadLetterProducer
from cronstream.streams.dlq.letters import Letter, LetterKey
from cronstream.streams.dlq.reading import LetterReader, Unreadable
from cronstream.streams.replay.audit import started_by
from cronstream.streams.sql import query

log = logging.getLogger(__name__)

SHOWN_PROBLEMS = 20  # unreadable records and missing letters named one a line, then counted


@dataclass(frozen=True)
class Filters:
    """Which unresolved dead letters a redrive takes; None matches everything."""

    topic: str | None = None
    reason: str | None = None
    since: datetime | None = None  # recorded at or after
    until: datetime | None = None  # recorded before
    partition: int | None = None
    from_offset: int | None = None  # of the original topic
    to_offset: int | None = None

    def args(self) -> tuple[Any, ...]:
        return (
            self.topic,
            self.reason,
            self.since,
            self.until,
            self.partition,
            self.from_offset,
            self.to_offset,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in vars(self).items()
            if value is not None
        }


@dataclass
class Redriven:
    """What a redrive (or its dry run) found and did."""

    redrive_id: int | None = None
    selected: int = 0
    found: int = 0  # selected letters found in their topics (the dry run's "would re-drive")
    applied: int = 0
    failed_again: int = 0
    skipped: int = 0
    read: int = 0  # records of the dead-letter topics read
    total: int = 0  # records of the dead-letter topics to read
    unreadable: list[str] = field(default_factory=list)  # one line each
    missing: list[str] = field(default_factory=list)
    would: list[Letter] = field(default_factory=list)  # the dry run's letters
    status: str = "succeeded"
    error: str | None = None

    def summary(self, dry_run: bool) -> str:
        if not self.selected:
            return "no unresolved dead letters match"
        if dry_run:
            return (
                f"would re-drive {self.found} of {self.selected} unresolved dead letter(s); "
                f"{len(self.missing)} not found in their topics, {len(self.unreadable)} "
                "unreadable record(s); nothing written"
            )
        return (
            f"redrive {self.redrive_id} {self.status}: {self.selected} selected, "
            f"{self.applied} applied and resolved, {self.failed_again} failed again, "
            f"{self.skipped} already resolved, {len(self.missing)} not found, "
            f"{len(self.unreadable)} unreadable record(s)"
        )


class Redrive:
    """One redrive (or dry run) of the dead letters `filters` select."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        filters: Filters,
        stopping: asyncio.Event,
        on_progress: Callable[[Redriven], None] = lambda done: None,
    ) -> None:
        self.settings = settings
        self.filters = filters
        self.stopping = stopping
        self.on_progress = on_progress
        self.consumer = settings.consumer_group
        self.producer = DeadLetterProducer(settings, self.consumer)
        self.ledger = DeadLetterLedger(self.consumer, self.producer, settings.dlq_topic)
        retry = RetryPolicy(
            settings.handler_attempts, settings.retry_backoff, settings.retry_backoff_max
        )
        self.dispatch = Dispatcher(
            router(settings, registry),
            Decoders(settings.external_topics),
            self.ledger,
            retry,
            settings.handler_timeout,
        )
        self.done = Redriven()

    async def run(self, dry_run: bool) -> Redriven:
        """Re-drive (or, with `dry_run`, only find) the selected letters; failures after
        the audit row exists end in the row and the result, not in an exception."""
        async with connections.connection(self.settings) as connection:
            rows = await connection.fetch(query("dlq_select"), self.consumer, *self.filters.args())
            wanted: dict[LetterKey, int] = {
                (self.consumer, r["topic"], r["partition"], r["offset"]): r["id"] for r in rows
            }
            self.done.selected = len(wanted)
            if not wanted:
                return self.done
            topics = sorted({row["dlq_topic"] for row in rows})
            if dry_run:
                await self._read(topics, wanted, None)
                return self.done
            await clients.ensure_topics(self.settings, topics)
            self.done.redrive_id = await connection.fetchval(
                query("dlq_redrive_start"),
                started_by(),
                self.consumer,
                json.dumps(self.filters.to_json()),
                len(wanted),
            )
            try:
                async with clients.started(self.producer):
                    await self._read(topics, wanted, connection)
                if self.stopping.is_set():
                    self.done.status = "interrupted"
            except Exception as error:  # in the row and the result; the caller says it
                self.done.status = "failed"
                self.done.error = safe_text(f"{type(error).__name__}: {error}", 2000)
                log.error("redrive %s failed: %s", self.done.redrive_id, self.done.error)
            await connection.execute(
                query("dlq_redrive_finish"),
                self.done.redrive_id,
                self.done.status,
                len(self.done.missing),
                len(self.done.unreadable),
                self.done.error,
            )
        return self.done

    async def _read(
        self,
        topics: list[str],
        wanted: dict[LetterKey, int],
        connection: asyncpg.Connection | None,
    ) -> None:
        """Read each topic, and apply (unless a dry run) the letters of `wanted` found."""
        left = dict(wanted)
        async with AsyncExitStack() as stack:
            readers = [
                await stack.enter_async_context(clients.started(LetterReader(self.settings, t)))
                for t in topics
            ]
            self.done.total = sum(reader.total for reader in readers)
            for reader in readers:
                async for batch in reader.batches(self.settings.batch_size):
                    self.done.read += len(batch)
                    letters = self._take(batch, left)
                    if connection is None:
                        self.done.would += letters
                    elif letters:
                        await self._apply(connection, letters, wanted)
                    self.on_progress(self.done)
                    if self.stopping.is_set():
                        return
        self.done.missing = [
            f"dead letter {row_id} ({topic}[{partition}]@{offset}) is not in its "
            "dead-letter topic (deleted by retention, or sent without its value)"
            for (_, topic, partition, offset), row_id in left.items()
        ]

    def _take(self, batch: list[Letter | Unreadable], left: dict[LetterKey, int]) -> list[Letter]:
        """The batch's letters still wanted (the first copy of each), noting the rest."""
        taken: list[Letter] = []
        for item in batch:
            if isinstance(item, Unreadable):
                at = item.at
                self.done.unreadable.append(
                    f"{at.topic}[{at.partition}]@{at.offset}: {item.reason}"
                )
                if len(self.done.unreadable) <= SHOWN_PROBLEMS:
                    log.warning("skipped %s", self.done.unreadable[-1])
            elif item.key in left and item.omitted is None:
                del left[item.key]
                taken.append(item)
        self.done.found += len(taken)
        return taken

    async def _apply(
        self, connection: asyncpg.Connection, letters: list[Letter], ids: dict[LetterKey, int]
    ) -> None:
        """One transaction: the letters still unresolved applied, or dead-lettered again."""
        by_position = {letter.original.position: ids[letter.key] for letter in letters}
        async with connection.transaction():
            locked = {
                row["id"]
                for row in await connection.fetch(query("dlq_lock"), list(by_position.values()))
            }
            records = [x.original for x in letters if by_position[x.original.position] in locked]
            outcome = Outcome()
            for batch in by_partition(records).values():
                await self.dispatch.apply_partition(connection, batch, outcome)
            if outcome.dead_letters:
                await self.ledger.send(connection, outcome.dead_letters)
            failed = {letter.record.position for letter in outcome.dead_letters}
            resolved = [by_position[r.position] for r in records if r.position not in failed]
            await connection.execute(query("dlq_resolve"), resolved, self.done.redrive_id)
            skipped = len(letters) - len(records)
            await connection.execute(
                query("dlq_redrive_progress"),
                self.done.redrive_id,
                len(resolved),
                len(failed),
                skipped,
            )
        self.done.applied += len(resolved)
        self.done.failed_again += len(failed)
        self.done.skipped += skipped
        self.ledger.sent.clear()  # committed: never sent again by this redrive
