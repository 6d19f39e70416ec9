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

A row that cannot become an event (a bad entity, key, version or payload, a NULL key, an
event larger than Kafka accepts) is rejected: logged in one line, recorded in
`scan_rejected_rows` in the transaction that marks its page, and never marked itself.
The scan goes on past it by keyset position, so a page of rejects cannot stop or loop a
run. In flag and outbox mode the row stays pending: each run meets it again (updating
its record in place) and emits it once it is fixed; a complete run drops the records of
rows it no longer met. In watermark mode the watermark passes it; its record stays
until a later version of the row is emitted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.errors import CronstreamError
from cronstream.events.envelope import (
    MAX_DEPTH,
    SYNC_REQUIRED,
    EnvelopeError,
    Event,
    json_object,
    strict_loads,
    sync_event_id,
)
from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.runtime import metrics, names
from cronstream.runtime.untrusted import safe_text
from cronstream.schedulers.jobs import SYSTEM_SCHEMA, JobError, ScanConfig, quote
from cronstream.schedulers.sql import query

log = logging.getLogger(__name__)

# A btree entry holds about 2,700 bytes: 500 characters of up to 4 bytes fit.
KEY_LIMIT = 500
OUTBOX_COLUMNS = ("id", "entity", "key", "version", "payload", "emitted_at")


def capped(key: str, limit: int) -> str:
    """`key` made safe; one too long is cut and ends in a hash of all of it, so that two
    keys with the same beginning stay apart."""
    text = safe_text(key, len(key) * 10)  # escaped, not cut
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: limit - 29]}... (sha256 {digest})"


def payload_object(text: str | bytes | None) -> dict[str, Any]:
    """A row's JSON as an object, or an EnvelopeError saying why it cannot be one."""
    if text is None:
        raise EnvelopeError("payload", "is NULL")
    # Postgres text holds no NUL and no lone surrogate; only a \u escape brings one in,
    # so JSON without one, and with too few brackets to nest past MAX_DEPTH as a
    # payload, skips the walk over every string (costly per row).
    if (
        isinstance(text, str)
        and "\\u" not in text
        and text.count("[") + text.count("{") < MAX_DEPTH
    ):
        with contextlib.suppress(ValueError, RecursionError):
            data = strict_loads(text)
            if type(data) is dict:
                return data
    try:
        return json_object(text, depth=2)  # the careful path, which says what is wrong
    except EnvelopeError as error:
        raise EnvelopeError("payload", error.reason) from None


class ScanBlocked(CronstreamError):
    """Postgres stopped the scan: a lock waited for past CRONSTREAM_DB_LOCK_TIMEOUT, a
    statement past CRONSTREAM_DB_STATEMENT_TIMEOUT, or a privilege the scheduler's role
    lacks. The run fails, the next tick tries again."""


@dataclass(frozen=True)
class Row:
    """A source row that became an event; `mark` is what marking it emitted needs."""

    event: Event
    value: bytes
    source_row: str
    mark: Any


@dataclass(frozen=True)
class Rejected:
    source_row: str  # the key (flag, watermark) or the outbox id, escaped and capped
    key: str | None
    reason: str


@dataclass(frozen=True)
class Page:
    size: int  # rows read, rejected ones included
    rows: list[Row]
    rejected: list[Rejected]
    position: Any  # where the next page starts


@dataclass
class Scanner:
    """One scan of one job: pages of rows, emitted then marked."""

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

    async def _prepare(self) -> None:
        config = self.config
        columns = await self._columns()
        if config.mode == "outbox":
            missing = [c for c in OUTBOX_COLUMNS if c not in columns]
            if missing:
                raise JobError(
                    f"job '{self.job}': outbox table {config.table} has no column "
                    + ", ".join(missing)
                )
        key_type, key_not_null = self._column(columns, config.key_column)
        self.key_nullable = not key_not_null
        if config.mode == "flag":
            self._expect_type(columns, config.flag_column, "boolean")
        if config.mode == "watermark":
            self._expect_type(columns, config.watermark_column, "xid8")
        names = {
            "table": quote(config.table),
            "key": quote(config.key_column),
            "flag": quote(config.flag_column),
            "watermark": quote(config.watermark_column),
            "key_type": key_type,
        }
        for name in (
            f"scan_{config.mode}_page",
            "scan_flag_mark",
            "scan_outbox_mark",
            "scan_flag_null_keys",
            "scan_watermark_null_keys",
            "scan_watermark_keyless",
        ):
            self.sql[name] = query(name).format(**names)

    async def _columns(self) -> dict[str, tuple[str, bool]]:
        """The table's columns: name -> (type, NOT NULL); a JobError if there is no table,
        or if the name resolves to one in a system schema (`pg_authid` to pg_catalog's)."""
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

    def _column(self, columns: dict[str, tuple[str, bool]], column: str) -> tuple[str, bool]:
        if column not in columns:
            raise JobError(f"job '{self.job}': table {self.config.table} has no column {column}")
        return columns[column]

    def _expect_type(
        self, columns: dict[str, tuple[str, bool]], column: str, expected: str
    ) -> None:
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
        complete = False
        while not complete:
            page = await self._page(position)
            if page.size:
                rows, too_large = await self._emit(page.rows)
                rejected = page.rejected + too_large
                async with self.connection.transaction():
                    await self._mark(rows, rejected, page.position)
                position = page.position
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
            complete = page.size < self.config.batch_size
            if not complete and should_stop():
                break
        if complete and self.config.mode != "watermark" and self.known_rejects:
            # A complete flag or outbox run met every row still pending: a record it did
            # not refresh is of a row since fixed, emitted by hand or deleted.
            await self.connection.execute(query("scan_rejects_sweep"), self.job, start["started"])
        log.info(
            "job %s: scan %s: %d emitted, %d rejected",
            self.job,
            "done" if complete else "stopped",
            self.emitted,
            self.rejected,
            extra={"job": self.job, "trace_id": self.trace_id},
        )
        return self.emitted

    async def _start_position(self) -> Any:
        if self.config.mode == "watermark":
            stored = await self.connection.fetchval(query("scan_watermark_get"), self.job)
            return json.loads(stored) if stored else None
        return 0 if self.config.mode == "outbox" else None

    async def _null_keys(self, position: Any) -> None:
        """Record rows whose key is NULL: they have no keyset position, so no page has them."""
        if self.config.mode == "outbox" or not self.key_nullable:
            return
        if self.config.mode == "flag":
            count = await self.connection.fetchval(self.sql["scan_flag_null_keys"])
        else:
            xid = position["xid"] if position else None
            count = await self.connection.fetchval(self.sql["scan_watermark_null_keys"], xid)
        if count:
            reason = f"key column {self.config.key_column} is NULL in {count} row(s)"
            async with self.connection.transaction():
                await self._record([Rejected("", None, reason)])
            self.rejected += count
            metrics.SCANNER_ROWS_REJECTED.labels(self.job).inc(count)
        elif (
            self.config.mode == "watermark"  # flag mode: a complete run sweeps it
            and self.known_rejects
            and not await self.connection.fetchval(self.sql["scan_watermark_keyless"])
        ):
            # No row without a key left (given one, or deleted): their record goes.
            await self.connection.execute(query("scan_rejects_resolve"), self.job, [""])

    async def _page(self, position: Any) -> Page:
        config = self.config
        fetch = self.sql[f"scan_{config.mode}_page"]
        if config.mode == "watermark":
            xid, key = (position["xid"], position["key"]) if position else (None, None)
            records = await self.connection.fetch(fetch, config.batch_size, xid, key)
        else:
            records = await self.connection.fetch(fetch, config.batch_size, position)
        if not records:
            return Page(0, [], [], position)
        rows: list[Row] = []
        rejected: list[Rejected] = []
        for record in records:
            try:
                rows.append(self._row(record))
            except EnvelopeError as error:
                rejected.append(self._rejected(record, str(error)))
        last = records[-1]
        if config.mode == "outbox":
            position = last["id"]
        elif config.mode == "flag":
            position = last["key"]
        else:
            position = {"xid": str(last["version"]), "key": last["key_text"]}
        return Page(len(records), rows, rejected, position)

    def _row(self, record: asyncpg.Record) -> Row:
        """The event of one source row, or an EnvelopeError saying why there is none."""
        config = self.config
        if config.mode == "outbox":
            entity, key, version = record["entity"], record["key"], record["version"]
            id_version: object = f"outbox:{record['id']}"
            payload, source_row, mark = record["payload"], str(record["id"]), record["id"]
        else:
            entity, key = config.entity_name, record["key_text"]
            # In flag mode the row version is xmin: fine to tell one row state from
            # another (the event id, the mark guard) but not ordered across
            # transactions, so the event carries no version and consumers order by
            # occurred_at. An xid8 watermark is ordered and is the version.
            version = record["version"] if config.mode == "watermark" else None
            id_version = record["version"]
            payload, source_row = record["row"], capped(key, KEY_LIMIT)
            mark = (record["key"], record["version"])
        data = payload_object(payload)
        event = Event.new(
            type=SYNC_REQUIRED,
            source=self.job,
            entity=entity,
            key=key,
            version=version,
            payload=data,
            id=sync_event_id(str(entity), str(key), str(id_version)),
            occurred_at=datetime.now(UTC),
            trace_id=self.trace_id,
        )
        return Row(event, event.encode(), source_row, mark)

    def _rejected(self, record: asyncpg.Record, reason: str) -> Rejected:
        if self.config.mode == "outbox":
            key = record["key"]
            key_text = None if key is None else capped(str(key), KEY_LIMIT)
            return Rejected(str(record["id"]), key_text, reason)
        key_text = capped(record["key_text"], KEY_LIMIT)
        return Rejected(key_text, key_text, reason)

    async def _emit(self, rows: list[Row]) -> tuple[list[Row], list[Rejected]]:
        """Send a page; wait until Kafka acknowledged every record (acks=all).

        Returns the rows Kafka took and the ones the producer refused as too large. Any
        other failure (Kafka unreachable, say) raises: nothing of the page is marked.
        """
        delivery = await clients.send(
            self.producer,
            [
                Message(self.topic, row.value, row.event.kafka_key, row.event.kafka_headers)
                for row in rows
            ],
        )
        # A broker whose max.message.bytes is below max_request_size refuses a whole
        # batch for one record, and aiokafka's idempotent producer cannot send to that
        # partition again (OutOfOrderSequenceNumber): no row can be told apart, so the
        # run fails with nothing of the page marked. Only what the client refused
        # unsent (over max_request_size) is the row's own fault.
        if delivery.failed:
            raise delivery.failed[min(delivery.failed)]
        sent = [rows[index] for index in sorted(delivery.acked)]
        refused = [rows[index] for index in sorted(delivery.refused)]
        too_large = [
            Rejected(
                row.source_row,
                capped(row.event.key, KEY_LIMIT),
                f"event of {len(row.value)} bytes is larger than Kafka accepts "
                "(the producer's max_request_size)",
            )
            for row in refused
        ]
        return sent, too_large

    async def _mark(self, rows: list[Row], rejected: list[Rejected], position: Any) -> None:
        """Mark the emitted rows and record the rejected ones, in one transaction."""
        mode = self.config.mode
        if mode == "flag" and rows:
            keys, versions = zip(*(row.mark for row in rows), strict=True)
            await self.connection.execute(self.sql["scan_flag_mark"], list(keys), list(versions))
        elif mode == "outbox" and rows:
            ids = [row.mark for row in rows]
            await self.connection.execute(self.sql["scan_outbox_mark"], ids)
        elif mode == "watermark":
            # The watermark passes rejected rows too: their records say so.
            stored = json.dumps(position)
            await self.connection.execute(query("scan_watermark_set"), self.job, stored)
            if self.known_rejects and rows:
                emitted = [row.source_row for row in rows]
                await self.connection.execute(query("scan_rejects_resolve"), self.job, emitted)
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

    def _describe(self, item: Rejected) -> str:
        key = "NULL" if item.key is None else repr(capped(item.key, 120))
        if self.config.mode == "outbox":
            return f"outbox id {item.source_row} (key {key})"
        return f"key {key}"
