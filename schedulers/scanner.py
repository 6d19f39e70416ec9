"""Scan jobs: turn Postgres rows that need it into sync_required events.

Modes, like Kafka Connect's JDBC source but without its holes:

- `flag`: rows whose boolean `flag_column` is true. The row version is `xmin`; after
  Kafka acknowledged a batch, the flag is cleared only where the row is still at the
  emitted version, so a change made meanwhile is emitted again by a later scan.
- `watermark`: rows whose `watermark_column` (an xid8 set to pg_current_xact_id() on
  every write) is past the job's watermark. A page only contains rows written by
  transactions older than the oldest one still in flight, so a transaction that
  commits after the scan cannot slip behind the watermark (the JDBC connector's
  issues #172 and #915).
- `outbox`: rows of an outbox table not yet emitted, in id order.

Pages use keyset pagination. Rows are marked (flag cleared, watermark stored, outbox row
stamped) only after Kafka acknowledged the page (idempotent producer, acks=all). A crash
between the two emits the same rows again with the same deterministic event ids, which
handlers deduplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.envelope import SYNC_REQUIRED, Event, sync_event_id
from cronstream.queries import query
from schedulers.jobs import JobError, ScanConfig, quote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    events: list[Event]
    mark: Callable[[asyncpg.Connection], Any]


class Scanner:
    """One scan of one job: pages of rows, emitted then marked."""

    def __init__(
        self,
        job: str,
        config: ScanConfig,
        connection: asyncpg.Connection,
        producer: AIOKafkaProducer,
        topic: str,
        trace_id: str,
    ) -> None:
        self.job = job
        self.config = config
        self.connection = connection
        self.producer = producer
        self.topic = topic
        self.trace_id = trace_id
        self.sql: dict[str, str] = {}
        self.emitted = 0

    async def _prepare(self) -> None:
        config = self.config
        key_type = await self._column_type(config.key_column)
        if config.mode == "flag":
            await self._expect_type(config.flag_column, "boolean")
        if config.mode == "watermark":
            await self._expect_type(config.watermark_column, "xid8")
        names = {
            "table": quote(config.table),
            "key": quote(config.key_column),
            "flag": quote(config.flag_column),
            "watermark": quote(config.watermark_column),
            "key_type": key_type,
        }
        for name in (f"scan_{config.mode}_page", "scan_flag_mark", "scan_outbox_mark"):
            self.sql[name] = query(name).format(**names)

    async def _column_type(self, column: str) -> str:
        found = await self.connection.fetchval(query("scan_column_type"), self.config.table, column)
        if found is None:
            raise JobError(f"job '{self.job}': table {self.config.table} has no column {column}")
        return str(found)

    async def _expect_type(self, column: str, expected: str) -> None:
        found = await self._column_type(column)
        if found != expected:
            raise JobError(
                f"job '{self.job}': {self.config.table}.{column} is {found}, not {expected}"
            )

    def _event(
        self,
        entity: str,
        key: str,
        version: int | None,
        payload: dict[str, Any],
        id_version: object,
    ) -> Event:
        return Event.new(
            type=SYNC_REQUIRED,
            source=self.job,
            entity=entity,
            key=key,
            version=version,
            payload=payload,
            id=sync_event_id(entity, key, str(id_version)),
            occurred_at=datetime.now(UTC),
            trace_id=self.trace_id,
        )

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Scan until no rows are left (or `should_stop` after a page); rows emitted."""
        await self._prepare()
        position = await self._start_position()
        while True:
            page, position = await self._page(position)
            if not page.events:
                return self.emitted
            await self._emit(page.events)
            async with self.connection.transaction():
                await page.mark(self.connection)
            self.emitted += len(page.events)
            log.info(
                "job %s: emitted %d rows",
                self.job,
                len(page.events),
                extra={"job": self.job, "trace_id": self.trace_id},
            )
            if len(page.events) < self.config.batch_size or should_stop():
                return self.emitted

    async def _start_position(self) -> Any:
        if self.config.mode == "watermark":
            stored = await self.connection.fetchval(query("scan_watermark_get"), self.job)
            return json.loads(stored) if stored else None
        return 0 if self.config.mode == "outbox" else None

    async def _page(self, position: Any) -> tuple[Page, Any]:
        config = self.config
        fetch = self.sql[f"scan_{config.mode}_page"]
        if config.mode == "outbox":
            rows = await self.connection.fetch(fetch, config.batch_size, position)
            events = [
                self._event(
                    r["entity"],
                    r["key"],
                    r["version"],
                    json.loads(r["payload"]),
                    f"outbox:{r['id']}",
                )
                for r in rows
            ]
            ids = [r["id"] for r in rows]
            mark_sql = self.sql["scan_outbox_mark"]
            return Page(events, lambda c: c.execute(mark_sql, ids)), (ids[-1] if ids else position)

        if config.mode == "flag":
            rows = await self.connection.fetch(fetch, config.batch_size, position)
        else:
            xid, key = (position["xid"], position["key"]) if position else (None, None)
            rows = await self.connection.fetch(fetch, config.batch_size, xid, key)
        entity = config.entity_name
        # In flag mode the row version is xmin: fine to tell one row state from another
        # (the event id, the mark guard) but not ordered across transactions, so the
        # event carries no version and consumers order by occurred_at. An xid8 watermark
        # is ordered and is the version.
        events = [
            self._event(
                entity,
                r["key_text"],
                r["version"] if config.mode == "watermark" else None,
                json.loads(r["row"]),
                r["version"],
            )
            for r in rows
        ]
        if not rows:
            return Page([], lambda c: None), position
        last = rows[-1]
        if config.mode == "flag":
            keys, versions = [r["key"] for r in rows], [r["version"] for r in rows]
            mark_sql = self.sql["scan_flag_mark"]
            return Page(events, lambda c: c.execute(mark_sql, keys, versions)), last["key"]
        new_position = {"xid": str(last["version"]), "key": last["key_text"]}
        stored = json.dumps(new_position)
        job = self.job
        return (
            Page(events, lambda c: c.execute(query("scan_watermark_set"), job, stored)),
            new_position,
        )

    async def _emit(self, events: list[Event]) -> None:
        """Send a page and wait until Kafka acknowledged every record (acks=all)."""
        futures = [
            await self.producer.send(
                self.topic, value=e.encode(), key=e.kafka_key, headers=e.kafka_headers
            )
            for e in events
        ]
        await asyncio.gather(*futures)
