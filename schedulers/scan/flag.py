"""Flag mode: rows whose boolean `flag_column` is true.

The row version is `xmin`; after Kafka acknowledged a batch, the flag is cleared only
where the row is still at the emitted version, so a change made meanwhile is emitted
again by a later scan. A rejected row keeps its flag: each run meets it again (updating
its record in place) and emits it once it is fixed; a complete run drops the records of
rows it no longer met.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cronstream.schedulers.scan.keyed import KeyedScanner
from cronstream.schedulers.scan.rows import Row


class FlagScanner(KeyedScanner):
    queries = ("scan_flag_page", "scan_flag_mark", "scan_flag_null_keys")
    page_query = "scan_flag_page"

    def _change_column(self) -> tuple[str, str]:
        return self.config.flag_column, "boolean"

    async def _start_position(self) -> Any:
        return None

    async def _count_null_keys(self, position: Any) -> int:
        count: int = await self.connection.fetchval(self.sql["scan_flag_null_keys"])
        return count

    def _position(self, last: asyncpg.Record) -> Any:
        return last["key"]

    def _version(self, record: asyncpg.Record) -> Any:
        # xmin tells one row state from another (the event id, the mark guard) but is not
        # ordered across transactions: the event carries no version, and consumers
        # order by occurred_at.
        return None

    async def _mark_emitted(self, rows: list[Row], position: Any) -> None:
        if rows:
            keys, versions = zip(*(row.mark for row in rows), strict=True)
            await self.connection.execute(self.sql["scan_flag_mark"], list(keys), list(versions))
