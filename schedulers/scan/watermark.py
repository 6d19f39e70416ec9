"""Watermark mode: rows whose `watermark_column` is past the job's watermark.

The column is an xid8 set to pg_current_xact_id() on every write. A page only contains
rows written by transactions older than the oldest one still in flight, so a
transaction that commits after the scan cannot slip behind the watermark (the JDBC
connector's issues #172 and #915). Pages go in (watermark, key) order; the position,
stored in scan_watermarks, is the last row's pair. The watermark passes a rejected row
too; its record stays until a later version of the row is emitted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from cronstream.schedulers.scan.keyed import KeyedScanner
from cronstream.schedulers.scan.rows import Row
from cronstream.schedulers.sql import query


class WatermarkScanner(KeyedScanner):
    queries = ("scan_watermark_page", "scan_watermark_null_keys", "scan_watermark_keyless")
    page_query = "scan_watermark_page"

    def _change_column(self) -> tuple[str, str]:
        return self.config.watermark_column, "xid8"

    async def _start_position(self) -> Any:
        stored = await self.connection.fetchval(query("scan_watermark_get"), self.job)
        return json.loads(stored) if stored else None

    async def _count_null_keys(self, position: Any) -> int:
        xid = position["xid"] if position else None
        count: int = await self.connection.fetchval(self.sql["scan_watermark_null_keys"], xid)
        return count

    async def _no_null_keys(self) -> None:
        if self.known_rejects and not await self.connection.fetchval(
            self.sql["scan_watermark_keyless"]
        ):
            # No row without a key left (given one, or deleted): their record goes.
            await self.connection.execute(query("scan_rejects_resolve"), self.job, [""])

    async def _completed(self, started: datetime) -> None:
        """Nothing: the watermark passed the rejected rows, a run does not meet them again."""

    def _after(self, position: Any) -> tuple[Any, ...]:
        return (position["xid"], position["key"]) if position else (None, None)

    def _position(self, last: asyncpg.Record) -> Any:
        return {"xid": str(last["version"]), "key": last["key_text"]}

    def _version(self, record: asyncpg.Record) -> Any:
        return record["version"]  # an xid8 is ordered: it is the version

    async def _mark_emitted(self, rows: list[Row], position: Any) -> None:
        # The watermark passes rejected rows too: their records say so.
        stored = json.dumps(position)
        await self.connection.execute(query("scan_watermark_set"), self.job, stored)
        if self.known_rejects and rows:
            emitted = [row.source_row for row in rows]
            await self.connection.execute(query("scan_rejects_resolve"), self.job, emitted)
