"""Outbox mode: rows of an outbox table not yet emitted, in id order.

The table has the columns OUTBOX_COLUMNS; a row's own entity, key, version and payload
make its event, and emitting stamps `emitted_at`. A rejected row stays unstamped: each
run meets it again (updating its record in place) and emits it once it is fixed; a
complete run drops the records of rows it no longer met.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cronstream.schedulers.jobs import JobError
from cronstream.schedulers.scan.base import Columns, Scanner
from cronstream.schedulers.scan.rows import KEY_LIMIT, Rejected, Row, capped

OUTBOX_COLUMNS = ("id", "entity", "key", "version", "payload", "emitted_at")


class OutboxScanner(Scanner):
    queries = ("scan_outbox_page", "scan_outbox_mark")
    page_query = "scan_outbox_page"

    def _check_columns(self, columns: Columns) -> tuple[str, bool]:
        missing = [c for c in OUTBOX_COLUMNS if c not in columns]
        if missing:
            raise JobError(
                f"job '{self.job}': outbox table {self.config.table} has no column "
                + ", ".join(missing)
            )
        return super()._check_columns(columns)

    async def _start_position(self) -> Any:
        return 0

    async def _null_keys(self, position: Any) -> None:
        """None to record: outbox pages go by id, which every row has."""

    def _position(self, last: asyncpg.Record) -> Any:
        return last["id"]

    def _row(self, record: asyncpg.Record) -> Row:
        return self._event(
            record["entity"],
            record["key"],
            record["version"],
            f"outbox:{record['id']}",
            record["payload"],
            str(record["id"]),
            record["id"],
        )

    def _rejected(self, record: asyncpg.Record, reason: str) -> Rejected:
        key = record["key"]
        key_text = None if key is None else capped(str(key), KEY_LIMIT)
        return Rejected(str(record["id"]), key_text, reason)

    async def _mark_emitted(self, rows: list[Row], position: Any) -> None:
        if rows:
            ids = [row.mark for row in rows]
            await self.connection.execute(self.sql["scan_outbox_mark"], ids)

    def _describe(self, item: Rejected) -> str:
        key = "NULL" if item.key is None else repr(capped(item.key, 120))
        return f"outbox id {item.source_row} (key {key})"
