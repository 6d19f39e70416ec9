"""The scan of one job, whatever its mode: pages of rows, emitted, then marked.

Pages use keyset pagination. Rows are marked (flag cleared, watermark stored, outbox row
stamped) only after Kafka acknowledged the page (idempotent producer, acks=all). A crash
between the two emits the same rows again with the same deterministic event ids, which
handlers deduplicate.

A row that cannot become an event (a bad entity, key, version or payload, a NULL key, an
event larger than Kafka accepts) is rejected: logged in one line, recorded in
`scan_rejected_rows` in the transaction that marks its page, and never marked itself.
The scan goes on past it by keyset position, so a page of rejects cannot stop or loop a
run. What happens to it next is the mode's: see flag.py, watermark.py and outbox.py.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.errors import CronstreamError
from cronstream.events.envelope import EnvelopeError
from cronstream.runtime import metrics, names
from cronstream.runtime.untrusted import safe_text
from cronstream.schedulers.jobs import SYSTEM_SCHEMA, JobError, ScanConfig, quote
from cronstream.schedulers.scan.emit import Emitted, emit
from cronstream.schedulers.scan.rows import Page, Rejected, Row
from cronstream.schedulers.scan.values import Envelopes
from cronstream.schedulers.sql import query

log = logging.getLogger(__name__)

Columns = dict[str, tuple[str, bool]]
"""A table's columns: name -> (type, NOT NULL)."""


def _abandon(sending: asyncio.Future[Emitted]) -> None:
    """Stop waiting for a page's acks (what was queued may still reach Kafka, unmarked)."""
    sending.cancel()
    if sending.done() and not sending.cancelled():
        sending.exception()  # retrieved: a failure no one awaits now is not logged


class ScanBlocked(CronstreamError):
    """Postgres stopped the scan: a lock waited for past CRONSTREAM_DB_LOCK_TIMEOUT, a
    statement past CRONSTREAM_DB_STATEMENT_TIMEOUT, or a privilege the scheduler's role
    lacks. The run fails, the next tick tries again."""


@dataclass
class Scanner(ABC):
    """One scan of one job: pages of rows, emitted then marked. One subclass per mode."""

    queries: ClassVar[tuple[str, ...]]
    """The mode's named queries, filled with the job's quoted identifiers."""
    page_query: ClassVar[str]
    """The one of `queries` that reads a page: $1 the batch size, then `_after`'s values."""

    job: str
    config: ScanConfig
    connection: asyncpg.Connection
    producer: AIOKafkaProducer
    topic: str
    trace_id: str
    sql: dict[str, str] = field(default_factory=dict, init=False)
    key_nullable: bool = field(default=False, init=False)
    emitted: int = field(default=0, init=False)
    rejected: int = field(default=0, init=False)
    known_rejects: bool = field(default=False, init=False)  # the job has rejected rows on record
    envelopes: Envelopes = field(init=False)

    def __post_init__(self) -> None:
        self.envelopes = Envelopes(self.job, self.trace_id)

    async def _prepare(self) -> None:
        config = self.config
        key_type, key_not_null = self._check_columns(await self._columns())
        self.key_nullable = not key_not_null
        names = {
            "table": quote(config.table),
            "key": quote(config.key_column),
            "flag": quote(config.flag_column),
            "watermark": quote(config.watermark_column),
            "key_type": key_type,
        }
        for name in self.queries:
            self.sql[name] = query(name).format(**names)

    def _check_columns(self, columns: Columns) -> tuple[str, bool]:
        """The key column's (type, NOT NULL); a JobError if the table lacks what the mode
        reads."""
        return self._column(columns, self.config.key_column)

    async def _columns(self) -> Columns:
        """The table's columns; a JobError if there is no table, or if the name resolves
        to one in a system schema (`pg_authid` to pg_catalog's)."""
        table = self.config.table
        found = await self.connection.fetchrow(query("scan_table"), quote(table))
        if found is None:
            hint = ""
            if table != table.lower() and await self.connection.fetchrow(
                query("scan_table"), quote(table.lower())
            ):
                hint = f" (names are case-sensitive; {table.lower()} exists)"
            raise JobError(f"job '{self.job}': table {table} does not exist{hint}")
        if names.is_system_schema(found["schema"]):
            resolved = f"{found['schema']}.{table.rpartition('.')[2]}"
            raise JobError(f"job '{self.job}': table {table} is {resolved}, which {SYSTEM_SCHEMA}")
        rows = await self.connection.fetch(query("scan_columns"), found["oid"])
        return {r["name"]: (str(r["type"]), bool(r["not_null"])) for r in rows}

    def _column(self, columns: Columns, column: str) -> tuple[str, bool]:
        if column not in columns:
            raise JobError(f"job '{self.job}': table {self.config.table} has no column {column}")
        return columns[column]

    def _expect_type(self, columns: Columns, column: str, expected: str) -> None:
        found, _ = self._column(columns, column)
        if found != expected:
            raise JobError(
                f"job '{self.job}': {self.config.table}.{column} is {found}, not {expected}"
            )

    async def scan(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Scan until no rows are left (or `should_stop` after a page); rows emitted.

        Rows rejected are counted in `self.rejected`. A lock or statement timeout, or a
        privilege missing, is a ScanBlocked naming the table; pages marked before it stay
        marked.
        """
        table = self.config.table
        try:
            return await self._scan(should_stop)
        except asyncpg.LockNotAvailableError:
            raise ScanBlocked(
                f"job '{self.job}': waited past the lock timeout (CRONSTREAM_DB_LOCK_TIMEOUT) "
                f"on table {table}: another session holds a lock on it or on rows of it"
            ) from None
        except asyncpg.QueryCanceledError as error:  # statement_timeout, or an operator
            raise ScanBlocked(
                f"job '{self.job}': scanning table {table}: {error} "
                "(CRONSTREAM_DB_STATEMENT_TIMEOUT bounds each statement)"
            ) from None
        except asyncpg.InsufficientPrivilegeError as error:
            raise ScanBlocked(
                f"job '{self.job}': scanning table {table}: {error} "
                "(grant the scheduler's role what the job needs)"
            ) from None

    async def _scan(self, should_stop: Callable[[], bool]) -> int:
        await self._prepare()
        start = await self.connection.fetchrow(query("scan_rejects_start"), self.job)
        self.known_rejects = bool(start["known"])
        position = await self._start_position()
        await self._null_keys(position)
        page = await self._page(position)
        sending = self._send(page)
        while True:
            # Kafka takes a page while the next one is read and made into events; once
            # it acknowledged the page, it takes the next while this one is marked.
            complete = page.size < self.config.batch_size
            if not complete:
                try:
                    following = await self._page(page.position)
                except Exception:
                    await self._marked(page, await sending)  # as had it been read after it
                    raise
                except BaseException:  # cancelled: nothing more is marked
                    _abandon(sending)
                    raise
            emitted = await sending
            if complete or should_stop():
                await self._marked(page, emitted)
                break
            sending = self._send(following)
            try:
                await self._marked(page, emitted)
            except BaseException:
                _abandon(sending)  # sent, not marked: emitted again by the next run
                raise
            page = following
        if complete:
            await self._completed(start["started"])
        log.info(
            "job %s: scan %s: %d emitted, %d rejected",
            self.job,
            "done" if complete else "stopped",
            self.emitted,
            self.rejected,
            extra={"job": self.job, "trace_id": self.trace_id},
        )
        return self.emitted

    def _send(self, page: Page) -> asyncio.Future[Emitted]:
        """The page's rows sent, as a task: acknowledged and refused ones when done."""
        if page.rows:
            return asyncio.ensure_future(emit(self.producer, self.topic, page.rows))
        nothing: asyncio.Future[Emitted] = asyncio.get_running_loop().create_future()
        nothing.set_result(([], []))
        return nothing

    async def _marked(self, page: Page, emitted: Emitted) -> None:
        """Once Kafka acknowledged the page: mark its rows, record its rejected ones."""
        if not page.size:
            return
        rows, too_large = emitted
        rejected = page.rejected + too_large
        async with self.connection.transaction():
            await self._mark(rows, rejected, page.position)
        self.emitted += len(rows)
        self.rejected += len(rejected)
        metrics.SCANNER_ROWS_EMITTED.labels(self.job).inc(len(rows))
        metrics.SCANNER_ROWS_REJECTED.labels(self.job).inc(len(rejected))
        log.info(
            "job %s: page: %d emitted, %d rejected",
            self.job,
            len(rows),
            len(rejected),
            extra={"job": self.job, "trace_id": self.trace_id},
        )

    @abstractmethod
    async def _start_position(self) -> Any:
        """Where the first page starts."""

    @abstractmethod
    async def _null_keys(self, position: Any) -> None:
        """Record the rows no page can have (a NULL key is no keyset position)."""

    async def _completed(self, started: datetime) -> None:
        """After a run that met every row: records of rows it did not meet again go."""
        if self.known_rejects:
            # A complete run met every row still pending: a record it did not refresh is
            # of a row since fixed, emitted by hand or deleted.
            await self.connection.execute(query("scan_rejects_sweep"), self.job, started)

    def _after(self, position: Any) -> tuple[Any, ...]:
        """The page query's parameters after the batch size: where the page starts."""
        return (position,)

    @abstractmethod
    def _position(self, last: asyncpg.Record) -> Any:
        """Where the page after the one ending in `last` starts."""

    @abstractmethod
    def _row(self, record: asyncpg.Record) -> Row:
        """The event of one source row, or an EnvelopeError saying why there is none."""

    @abstractmethod
    def _rejected(self, record: asyncpg.Record, reason: str) -> Rejected:
        """A row that cannot become an event."""

    @abstractmethod
    async def _mark_emitted(self, rows: list[Row], position: Any) -> None:
        """Mark the rows Kafka acknowledged, in the page's transaction."""

    @abstractmethod
    def _describe(self, item: Rejected) -> str:
        """A rejected row as its log line names it."""

    async def _page(self, position: Any) -> Page:
        records = await self.connection.fetch(
            self.sql[self.page_query], self.config.batch_size, *self._after(position)
        )
        if not records:
            return Page(0, [], [], position)
        rows: list[Row] = []
        rejected: list[Rejected] = []
        for record in records:
            try:
                rows.append(self._row(record))
            except EnvelopeError as error:
                rejected.append(self._rejected(record, str(error)))
        return Page(len(records), rows, rejected, self._position(records[-1]))

    def _event(
        self,
        entity: Any,
        key: Any,
        version: Any,
        id_version: object,
        payload: str | bytes | None,
        source_row: str,
        mark: Any,
    ) -> Row:
        """A row of the page as its event; `entity`, `key` and `version` as the row has
        them (Event.new refuses bad ones), `id_version` what tells its states apart."""
        return self.envelopes.row(entity, key, version, id_version, payload, source_row, mark)

    async def _mark(self, rows: list[Row], rejected: list[Rejected], position: Any) -> None:
        """Mark the emitted rows and record the rejected ones, in one transaction."""
        await self._mark_emitted(rows, position)
        await self._record(rejected)

    async def _record(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        self.known_rejects = True
        unique: dict[str, Rejected] = {}
        for item in rejected:
            log.warning(
                "job %s: row %s rejected: %s",
                self.job,
                self._describe(item),
                item.reason,
                extra={"job": self.job, "trace_id": self.trace_id},
            )
            # One statement may not update a row twice: the last word on a row wins.
            unique[item.source_row] = item
        config = self.config
        await self.connection.execute(
            query("scan_rejects_record"),
            self.job,
            config.mode,
            config.table,
            list(unique),
            [item.key for item in unique.values()],
            [safe_text(item.reason, 1000) for item in unique.values()],
        )
