"""Rows of a user table keyed by the job's `key_column`: what flag and watermark scans share.

The key is the keyset position, so a row whose key is NULL is on no page: such rows are
counted before the first page and recorded together under source_row ''.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import asyncpg

from cronstream.runtime import metrics
from cronstream.schedulers.scan.base import Columns, Scanner
from cronstream.schedulers.scan.rows import KEY_LIMIT, Rejected, Row, capped


class KeyedScanner(Scanner):
    """A scan of a table's own rows, keyed by `key_column`."""

    @abstractmethod
    def _change_column(self) -> tuple[str, str]:
        """The column that tells which rows to emit, and the type it must have."""

    def _check_columns(self, columns: Columns) -> tuple[str, bool]:
        key = super()._check_columns(columns)
        self._expect_type(columns, *self._change_column())
        return key

    @abstractmethod
    def _version(self, record: asyncpg.Record) -> Any:
        """The event's version; the row version (`record["version"]`) tells the row's
        states apart whatever this returns."""

    @abstractmethod
    async def _count_null_keys(self, position: Any) -> int:
        """The rows with a NULL key that this run would otherwise have met."""

    async def _no_null_keys(self) -> None:
        """Called when no row has a NULL key (a complete run sweeps a record by default)."""

    async def _null_keys(self, position: Any) -> None:
        """Record rows whose key is NULL: they have no keyset position, so no page has them."""
        if not self.key_nullable:
            return
        count = await self._count_null_keys(position)
        if count:
            reason = f"key column {self.config.key_column} is NULL in {count} row(s)"
            async with self.connection.transaction():
                await self._record([Rejected("", None, reason)])
            self.rejected += count
            metrics.SCANNER_ROWS_REJECTED.labels(self.job).inc(count)
        else:
            await self._no_null_keys()

    def _row(self, record: asyncpg.Record) -> Row:
        key = record["key_text"]
        return self._event(
            self.config.entity_name,
            key,
            self._version(record),
            record["version"],
            record["row"],
            capped(key, KEY_LIMIT),
            (record["key"], record["version"]),
        )

    def _rejected(self, record: asyncpg.Record, reason: str) -> Rejected:
        key_text = capped(record["key_text"], KEY_LIMIT)
        return Rejected(key_text, key_text, reason)

    def _describe(self, item: Rejected) -> str:
        key = "NULL" if item.key is None else repr(capped(item.key, 120))
        return f"key {key}"
