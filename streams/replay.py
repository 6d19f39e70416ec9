"""Replay: read a range of a topic again and feed it through the checkpoint protocol.

The range is read by an `AIOKafkaConsumer` without a group (no rebalance, no committed
offsets touched): the chosen partitions are assigned and sought to their first offset,
and each is read up to its last offset, at most the log end captured at the start, so
a replay ends even while producers keep writing. `offsets_for_times` resolves times:
`--from-time T` starts at the first offset whose timestamp is >= T (none: nothing to
replay in that partition), `--to-time T` ends at the offset before the first whose
timestamp is >= T.

Batches of up to `batch_size` records go through the worker's `BatchLoop` and
`BatchApplier`: the same handlers, checkpoint protocol, outage retry and dead letters.

- re-apply (the live consumer group): each partition's checkpoint c0 is read at the
  start. Records of the range at or below c0 were applied before and are applied again,
  once each, under the live checkpoint rows' FOR UPDATE locks (live workers wait on
  them), and the checkpoint is never lowered; records above c0 follow the normal
  protocol, so the live workers and the replay apply each exactly once between them.
  Lowering the checkpoint to the range start instead would make the workers re-apply
  everything after the range too.
- rebuild (`--consumer NAME`): checkpoints of its own, and every handler call runs with
  the transaction's `search_path` set to a schema of its own (restored right after the
  call, inside the handler's savepoint), so effects land in tables created there
  `LIKE` the live ones, while the protocol's own queries keep the live search_path.
  Another consumer's replay still writing into that schema refuses it.

Each real replay is recorded in the `replays` table (migrations/0005_replays.sql), and
holds an advisory lock on its id while it runs (streams/sql/replay.sql).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import hashlib
import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from cronstream.config.settings import Settings
from cronstream.errors import CronstreamError
from cronstream.events.envelope import Event
from cronstream.handlers.checkpoints import Outcome, Record, Router, is_outage
from cronstream.handlers.registry import Handler, Registry
from cronstream.kafka import clients, salvage
from cronstream.pg import connections
from cronstream.runtime.names import NOT_AN_IDENTIFIER, is_identifier, quote
from cronstream.runtime.retry import pause
from cronstream.runtime.untrusted import safe_text, shown
from cronstream.streams.batch_engine import to_record
from cronstream.streams.batches import BatchLoop, router, settle
from cronstream.streams.sql import query

log = logging.getLogger(__name__)

Mode = Literal["re-apply", "rebuild"]
Status = Literal["succeeded", "failed", "interrupted"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReplayError(CronstreamError, ValueError):
    """A replay that cannot be done as asked; the message is one line naming the option."""

    exit_code = 2


def identifier(option: str, value: str, qualified: bool = False) -> str:
    """A plain SQL identifier (`schema.name` when `qualified`), or a ReplayError."""
    if not is_identifier(value, qualified):
        raise ReplayError(f"{option} '{shown(value)}' {NOT_AN_IDENTIFIER}")
    return value


def schema_for(consumer: str) -> str:
    """The default rebuild schema of a consumer name: the name made a safe identifier,
    then `_` and a hash of the exact name, so names that read alike (`orders-v2` and
    `orders.v2`, `Orders` and `orders`, long names alike in their first 52 characters)
    get schemas of their own. At most 63 characters, Postgres's identifier limit."""
    digest = hashlib.sha256(consumer.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name = re.sub(r"[^a-z0-9_]", "_", consumer.lower())
    if not re.match(r"[a-z_]", name):
        name = f"r_{name}"
    if name.startswith("pg_"):
        name = f"r_{name}"  # Postgres reserves pg_ schema names
    return f"{name[: 63 - 1 - len(digest)]}_{digest}"


def parse_partitions(text: str) -> tuple[int, ...]:
    """`0,3` -> (0, 3); refuses anything but distinct non-negative integers."""
    numbers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not part.isascii():
            raise ReplayError(f"--partitions '{shown(text)}': '{shown(part)}' is not a partition")
        if int(part) in numbers:
            raise ReplayError(f"--partitions '{shown(text)}': partition {part} is given twice")
        numbers.append(int(part))
    return tuple(sorted(numbers))


def parse_time(option: str, text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (a time without one would be ambiguous)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"{option} '{shown(text)}' is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ReplayError(f"{option} '{shown(text)}' needs a UTC offset, e.g. {shown(text)}+00:00")
    if moment < _EPOCH:
        raise ReplayError(f"{option} '{shown(text)}' is before 1970")
    return moment


def to_millis(moment: datetime) -> int:
    """Kafka's millisecond timestamp of `moment`, rounded up: a record stamped at
    millisecond m is before `moment` exactly when m < to_millis(moment)."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


@dataclass(frozen=True)
class Asked:
    """The options of `cronstream replay` as given, before `check`."""

    topic: str
    partitions: str | None = None
    from_offset: int | None = None
    from_time: str | None = None
    from_beginning: bool = False
    to_offset: int | None = None
    to_time: str | None = None
    consumer: str | None = None  # rebuild mode when set
    schema: str | None = None
    like: tuple[str, ...] = ()
    rate_limit: float | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Asked:
        """The replay options among a command's parameters, picked by name."""
        picked = {option.name: options[option.name] for option in fields(cls)}
        return cls(**picked | {"like": tuple(picked["like"] or ())})  # a list, or None


@dataclass(frozen=True)
class Request:
    """What the operator asked for, validated (`check` builds it): the options as given,
    with times, partitions and the rebuild target resolved."""

    asked: Asked
    partitions: tuple[int, ...] | None
    from_time: datetime | None
    to_time: datetime | None
    schema: str | None  # rebuild mode only
    like: tuple[str, ...]

    @property
    def mode(self) -> Mode:
        return "re-apply" if self.asked.consumer is None else "rebuild"

    def recorded(self) -> dict[str, Any]:
        """The request as the audit row keeps it."""
        return {
            "partitions": list(self.partitions) if self.partitions is not None else None,
            "from_offset": self.asked.from_offset,
            "from_time": self.from_time.isoformat() if self.from_time else None,
            "from_beginning": self.asked.from_beginning,
            "to_offset": self.asked.to_offset,
            "to_time": self.to_time.isoformat() if self.to_time else None,
            "like": list(self.like),
            "rate_limit": self.asked.rate_limit,
        }


def check(asked: Asked, live_group: str) -> Request:
    """The options of `cronstream replay` as a Request; a bad one raises ReplayError."""
    topic, from_offset, to_offset = asked.topic, asked.from_offset, asked.to_offset
    from_time, to_time, rate_limit = asked.from_time, asked.to_time, asked.rate_limit
    consumer, schema, like = asked.consumer, asked.schema, asked.like
    if not topic.strip():
        raise ReplayError("--topic must name a topic")
    starts = [from_offset is not None, from_time is not None, asked.from_beginning]
    if sum(starts) != 1:
        raise ReplayError("give exactly one of --from-offset, --from-time, --from-beginning")
    if to_offset is not None and to_time is not None:
        raise ReplayError("give at most one of --to-offset, --to-time")
    for option, offset in (("--from-offset", from_offset), ("--to-offset", to_offset)):
        if offset is not None and offset < 0:
            raise ReplayError(f"{option} {offset} is negative")
    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise ReplayError(f"--from-offset {from_offset} is after --to-offset {to_offset}")
    start = parse_time("--from-time", from_time) if from_time is not None else None
    end = parse_time("--to-time", to_time) if to_time is not None else None
    if start is not None and end is not None and start >= end:
        raise ReplayError(f"--from-time {start.isoformat()} is not before --to-time")
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ReplayError(f"--rate-limit {rate_limit} must be a positive number of records/s")
    if consumer is None and (schema is not None or like):
        raise ReplayError("--schema and --like belong to rebuild mode: give --consumer NAME")
    if consumer is not None:
        if not consumer.strip():
            raise ReplayError("--consumer must name a consumer")
        if consumer == live_group:
            raise ReplayError(
                f"--consumer '{shown(consumer)}' is the live consumer group: to re-apply "
                "a range for it, leave --consumer out"
            )
        schema = identifier("--schema", schema) if schema is not None else schema_for(consumer)
        if schema.lower().startswith("pg_") or schema.lower() == "information_schema":
            raise ReplayError(f"--schema '{shown(schema)}' is a system schema")
        like = tuple(identifier("--like", name, qualified=True) for name in like) or (
            "entity_projection",
        )
    partitions = parse_partitions(asked.partitions) if asked.partitions is not None else None
    return Request(asked, partitions, start, end, schema, like)


def offset_range(log_start: int, log_end: int, first: int | None, last: int | None) -> range:
    """The offsets to replay of a partition holding [log_start, log_end).

    `first`: the first offset asked (None: nothing, e.g. no record since --from-time);
    `last`: the last one asked, inclusive (None: to the end). Never past the log end
    captured at the start, never before the log start (older records are gone).
    """
    if first is None:
        return range(log_end, log_end)
    top = log_end - 1 if last is None else min(last, log_end - 1)
    return range(max(first, log_start), max(top + 1, max(first, log_start)))


@dataclass(frozen=True)
class PartitionPlan:
    """One partition's range and the consumer's checkpoint when the replay started."""

    partition: int
    offsets: range
    checkpoint: int  # -1: none

    @property
    def reapplied(self) -> int:
        """Records of the range at or below the checkpoint (re-applied in re-apply mode)."""
        return len(range(self.offsets.start, min(self.offsets.stop, self.checkpoint + 1)))

    @property
    def new_checkpoint(self) -> int:
        return max(self.checkpoint, self.offsets.stop - 1) if self.offsets else self.checkpoint

    def describe(self, mode: Mode, consumer: str) -> str:
        span = (
            f"offsets {self.offsets.start}..{self.offsets.stop - 1}"
            if self.offsets
            else "offsets none"
        )
        head = f"partition {self.partition}: {span}, {len(self.offsets)} records"
        c, new = self.checkpoint, self.new_checkpoint
        if mode == "re-apply":
            above = len(self.offsets) - self.reapplied
            return (
                f"{head}; re-applies {self.reapplied} at or below checkpoint {c}, "
                f"applies {above} above it (checkpoint {c} -> {new})"
            )
        skipped = f", skips {self.reapplied} at or below it (done before)" if self.reapplied else ""
        return f"{head}; consumer {consumer} checkpoint {c} -> {new}{skipped}"


@dataclass(frozen=True)
class Plan:
    request: Request
    consumer: str
    partitions: tuple[PartitionPlan, ...]

    @property
    def mode(self) -> Mode:
        return self.request.mode

    @property
    def total(self) -> int:
        return sum(len(p.offsets) for p in self.partitions)

    def lines(self) -> list[str]:
        where = f" into schema {self.request.schema}" if self.request.schema else ""
        return [
            f"{self.mode} of {self.request.asked.topic} for consumer {self.consumer}{where}: "
            f"{self.total} records",
            *(p.describe(self.mode, self.consumer) for p in self.partitions),
        ]

    def range_json(self) -> dict[str, Any]:
        return {
            "asked": self.request.recorded(),
            "resolved": {
                str(p.partition): {
                    "from": p.offsets.start,
                    "to": p.offsets.stop - 1,
                    "records": len(p.offsets),
                    "checkpoint": p.checkpoint,
                }
                for p in self.partitions
            },
        }


async def plan(settings: Settings, request: Request) -> Plan:
    """Resolve the request against Kafka and the consumer's checkpoints; writes nothing."""
    topic = request.asked.topic
    consumer_name = request.asked.consumer or settings.consumer_group
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **clients.connection_options(settings))
    async with clients.started(consumer) as reader:
        # The cluster's metadata as fetched now; the consumer's own may not know the topic.
        cluster = await reader._client.fetch_all_metadata()
        existing = sorted(cluster.partitions_for_topic(topic) or ())
        if topic not in cluster.topics() or not existing:
            raise ReplayError(f"--topic '{shown(topic)}': no such topic")
        chosen = list(request.partitions) if request.partitions is not None else existing
        missing = [p for p in chosen if p not in existing]
        if missing:
            raise ReplayError(
                f"--partitions: {topic} has no partition {missing[0]} "
                f"(it has {len(existing)}: 0..{len(existing) - 1})"
            )
        tps = [TopicPartition(topic, p) for p in chosen]
        starts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
        firsts: dict[TopicPartition, int | None] = dict.fromkeys(tps, 0)  # --from-beginning
        if request.asked.from_offset is not None:
            firsts = dict.fromkeys(tps, request.asked.from_offset)
        elif request.from_time is not None:
            found = await reader.offsets_for_times(dict.fromkeys(tps, to_millis(request.from_time)))
            firsts = {tp: found[tp].offset if found.get(tp) else None for tp in tps}
        lasts: dict[TopicPartition, int | None] = dict.fromkeys(tps, request.asked.to_offset)
        if request.to_time is not None:
            found = await reader.offsets_for_times(dict.fromkeys(tps, to_millis(request.to_time)))
            lasts = {tp: found[tp].offset - 1 if found.get(tp) else None for tp in tps}
    async with connections.connection(settings) as connection:
        rows = await connection.fetch(query("replay_checkpoints"), consumer_name, topic)
        if request.schema is not None:
            await _check_schema(connection, request.schema, request.like)
            checkpointed = any(row["offset"] >= 0 for row in rows)
            await _check_owner(connection, request, checkpointed)
    done = {row["partition"]: row["offset"] for row in rows}
    return Plan(
        request=request,
        consumer=consumer_name,
        partitions=tuple(
            PartitionPlan(
                tp.partition,
                offset_range(starts[tp], ends[tp], firsts[tp], lasts[tp]),
                done.get(tp.partition, -1),
            )
            for tp in tps
        ),
    )


async def _check_schema(connection: asyncpg.Connection, schema: str, like: Sequence[str]) -> None:
    """Refuse a rebuild schema whose tables are live ones: it must be a schema apart."""
    live = await connection.fetchval(query("replay_live_schemas"))
    if schema in live:
        raise ReplayError(
            f"--schema '{shown(schema)}' is on the live search_path ({', '.join(live)}): "
            "pick a schema of its own"
        )
    for table in like:
        home = await connection.fetchval(query("replay_table_schema"), quote(table))
        if home is None:
            raise ReplayError(f"--like '{shown(table)}': no such table in the live schema")
        if home == schema:
            raise ReplayError(f"--like '{shown(table)}' is in --schema {schema} itself")
        copy = f"{quote(schema)}.{quote(table.split('.')[-1])}"
        missing = await connection.fetchval(query("replay_missing_columns"), quote(table), copy)
        if missing:
            raise ReplayError(
                f"{schema}.{table.split('.')[-1]} lacks column(s) {', '.join(missing)} of the "
                f"live {table} (migrated since this rebuild began): drop schema {schema}, or "
                "give another --schema, and rebuild from the start"
            )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


async def _check_owner(
    connection: asyncpg.Connection, request: Request, checkpointed: bool
) -> None:
    """Refuse a rebuild whose consumer's checkpoints belong to another schema (resuming
    would skip what went there), or whose schema another consumer's replay writes into."""
    schema, consumer = request.schema, request.asked.consumer
    assert schema is not None and consumer is not None, "rebuild mode"
    last = await connection.fetchrow(query("replay_last_rebuild"), consumer, request.asked.topic)
    if checkpointed and last is not None and last["schema"] != schema:
        theirs = shown(last["schema"])
        raise ReplayError(
            f"--consumer '{shown(consumer)}' has checkpoints from its rebuild into schema "
            f"{theirs} (replay {last['id']}, started {_when(last['started_at'])}): give "
            f"--schema {theirs} to go on there, or another --consumer to rebuild from the start"
        )
    await refuse_held(connection, schema, consumer)


async def refuse_held(connection: asyncpg.Connection, schema: str, consumer: str) -> None:
    """Refuse a schema that a running replay of another consumer writes into: two
    rebuilds there would mix. A row left 'running' by a process that died holds nothing."""
    holder = await connection.fetchrow(query("replay_holder"), schema, consumer)
    if holder is not None:
        raise ReplayError(
            f"--schema {schema} is in use by replay {holder['id']} of consumer "
            f"'{shown(holder['consumer'])}' (started {_when(holder['started_at'])} by "
            f"{shown(holder['started_by'])}), still running: wait for it to end or stop it, "
            "or give another --schema"
        )


async def prepare_schema(connection: asyncpg.Connection, schema: str, like: Sequence[str]) -> None:
    """The rebuild schema with empty copies of the live tables, if not there already."""
    # Identifiers cannot be parameters; both were checked as plain identifiers.
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    for table in like:
        target = f"{quote(schema)}.{quote(table.split('.')[-1])}"
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {target} (LIKE {quote(table)} INCLUDING ALL)"
        )


def in_schema(route: Router, schema: str) -> Router:
    """The same routing, each handler call running with `search_path` set to `schema`.

    Set just before the call and restored just after it, inside the savepoint the
    applier opens per attempt; a failed call rolls the savepoint back, which undoes the
    set_config too. A handler touching a table not created in `schema` fails rather
    than writing into the live tables.
    """
    path = quote(schema)
    live: list[str] = []
    wrapped: dict[int, Handler] = {}

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def in_rebuild_schema(
            events: Sequence[Event], connection: asyncpg.Connection
        ) -> None:
            if not live:  # the session's path, the same for every call: read once
                live.append(await connection.fetchval(query("replay_search_path")))
            await connection.fetchval(query("replay_set_search_path"), path)
            await handler(events, connection)
            await connection.fetchval(query("replay_set_search_path"), live[0])

        return in_rebuild_schema

    def route_in_schema(topic: str, event_type: str) -> Handler | None:
        handler = route(topic, event_type)
        if handler is None:
            return None
        if id(handler) not in wrapped:
            wrapped[id(handler)] = wrap(handler)
        return wrapped[id(handler)]

    return route_in_schema


@dataclass
class Progress:
    """What a replay has done so far; `stopped` is each partition's last settled offset."""

    total: int
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    stopped: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    status: Status = "succeeded"
    error: str | None = None
    replay_id: int | None = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def counters(self) -> tuple[int, int, int, int]:
        """Records read, applied, duplicates, dead-lettered: as the replays row has them."""
        return self.records, self.applied, self.duplicates, self.dead_lettered

    def add(self, records: Sequence[Record], outcome: Outcome) -> None:
        self.records += len(records)
        self.applied += outcome.applied
        self.duplicates += outcome.duplicates
        self.dead_lettered += len(outcome.dead_letters)
        for record in records:
            self.stopped[record.partition] = max(
                self.stopped.get(record.partition, -1), record.offset
            )

    def summary(self, topic: str) -> str:
        return (
            f"replay of {topic} {self.status}: {self.records} records read, {self.applied} "
            f"applied, {self.duplicates} duplicates, {self.dead_lettered} dead-lettered "
            f"in {self.seconds:.1f}s ({self.rate:.0f} records/s)"
        )

    def unfinished(self, plan: Plan) -> list[tuple[int, int, int]]:
        """(partition, next offset, last offset) of each partition not replayed to its end."""
        left = []
        for p in plan.partitions:
            reached = self.stopped.get(p.partition, p.offsets.start - 1)
            if p.offsets and reached < p.offsets.stop - 1:
                left.append((p.partition, reached + 1, p.offsets.stop - 1))
        return left


def started_by() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry, e.g. in a container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Replay:
    """One real replay of a plan: the audit row, the reading loop, the batches."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        plan: Plan,
        handlers: Sequence[str],
        stopping: asyncio.Event,
        on_progress: Callable[[Progress], None] = lambda progress: None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.handlers = list(handlers)
        self.stopping = stopping
        self.on_progress = on_progress
        request = plan.request
        route = router(settings, registry)
        if request.schema is not None:
            route = in_schema(route, request.schema)
        # Re-apply: what each live checkpoint covered at the start is applied again.
        reapply = {(request.asked.topic, p.partition): p.checkpoint for p in plan.partitions}
        if request.mode == "rebuild":
            reapply = {}
        self.batches = BatchLoop(
            settings,
            registry,
            stopping,
            consumer=plan.consumer,
            route=route,
            reapply_through=reapply,
        )
        self.progress = Progress(total=plan.total)
        self.audit: asyncpg.Connection | None = None
        self.poll_failure: str | None = None  # the last failed poll's error, said once

    async def run(self) -> Progress:
        """Replay the plan; the Progress says how it ended (never raises for a failure
        once the audit row exists: the row and the result say it)."""
        request = self.plan.request
        self.audit = await connections.connect(self.settings)
        try:
            await clients.ensure_topics(
                self.settings, [self.settings.dlq_topic(request.asked.topic)]
            )
            self.progress.replay_id = await self._start(self.audit)
            self.progress.started = time.monotonic()
            try:
                await self._read_and_apply()
                if self.stopping.is_set() and self.progress.unfinished(self.plan):
                    self.progress.status = "interrupted"
            except Exception as error:  # recorded in the row, and shown by the caller
                # Kafka or Postgres gone for good is one line; anything else is a bug.
                log.error(
                    "replay %s failed: %s: %s",
                    self.progress.replay_id,
                    type(error).__name__,
                    safe_text(str(error), 500),
                    exc_info=not (is_outage(error) or isinstance(error, ReplayError)),
                )
                self.progress.status = "failed"
                self.progress.error = safe_text(f"{type(error).__name__}: {error}", 2000)
            await self._finish()
        finally:
            await self.audit.close()
        return self.progress

    async def _start(self, audit: asyncpg.Connection) -> int:
        """The audit row, and this replay's lock held on `audit` until it ends. A rebuild
        checks its schema is not in use and prepares it in the same transaction, under a
        lock on the schema: two starting at once cannot both pass."""
        request = self.plan.request
        async with audit.transaction():
            if request.schema is not None:
                await audit.execute(query("replay_lock_schema"), request.schema)
                await refuse_held(audit, request.schema, self.plan.consumer)
                await prepare_schema(audit, request.schema, request.like)
            replay_id: int = await audit.fetchval(
                query("replay_start"),
                started_by(),
                request.mode,
                self.plan.consumer,
                request.schema,
                request.asked.topic,
                [p.partition for p in self.plan.partitions],
                json.dumps(self.plan.range_json()),
                self.handlers,
            )
            await audit.execute(query("replay_hold"), replay_id)
        return replay_id

    async def _read_and_apply(self) -> None:
        size = self.settings.batch_size
        if self.plan.request.asked.rate_limit is not None:  # batches of about a second
            size = max(1, min(size, math.ceil(self.plan.request.asked.rate_limit)))
        topic = self.plan.request.asked.topic
        remaining = {
            TopicPartition(topic, p.partition): p.offsets for p in self.plan.partitions if p.offsets
        }
        if not remaining:
            return
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            max_poll_records=size,
            # Records deleted under the replay (retention) are an error, never a silent
            # jump to the log end that would end the replay "succeeded".
            auto_offset_reset="none",
            **clients.connection_options(self.settings),
        )
        async with clients.started(self.batches), clients.started(consumer) as reader:
            reader.assign(list(remaining))
            for tp, offsets in remaining.items():
                reader.seek(tp, offsets.start)
            # Where each partition goes back to after a failed poll: past what was applied.
            nexts = {tp: offsets.start for tp, offsets in remaining.items()}
            quiet_since = time.monotonic()
            while remaining and not self.stopping.is_set():
                try:
                    polled = await reader.getmany(*remaining, timeout_ms=500, max_records=size)
                except OffsetOutOfRangeError as error:
                    lost = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in error.args[0])
                    raise ReplayError(
                        f"{lost}: records of the range were deleted (retention) before the "
                        "replay read them"
                    ) from None
                except Exception as error:
                    polled = await self._recover(reader, error, {tp: nexts[tp] for tp in remaining})
                else:
                    self.poll_failure = None
                if polled:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > self.settings.request_timeout:
                    # aiokafka's own connection errors are held back (cronstream/kafka/health.py)
                    log.warning(
                        "replay waits: no records from Kafka for %.0fs (%d partition(s) left)",
                        self.settings.request_timeout,
                        len(remaining),
                    )
                    quiet_since = time.monotonic()
                records = [
                    to_record(message)
                    for tp, messages in polled.items()
                    if tp in remaining
                    for message in messages
                    if message.offset < remaining[tp].stop
                ]
                # Read to its last offset (or past it: a compacted log has gaps).
                finished = {
                    tp: remaining.pop(tp)
                    for tp in list(remaining)
                    if await reader.position(tp) >= remaining[tp].stop
                }
                reader.pause(*finished)
                if records and not await self._apply(records):
                    return
                for record in records:  # in offset order per partition
                    nexts[TopicPartition(record.topic, record.partition)] = record.offset + 1
                for tp, offsets in finished.items():
                    self.progress.stopped[tp.partition] = offsets.stop - 1
                await self._keep_rate()

    async def _recover(
        self, reader: AIOKafkaConsumer, error: Exception, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """After a failed poll (which may have taken records out of aiokafka's buffer):
        every partition back to where this replay's applying got to, and the records
        aiokafka cannot parse, read by kafka_salvage with those before them."""
        failure = f"{type(error).__name__}: {error}"
        if failure != self.poll_failure:  # said once, not once a second
            log.error(
                "replay %s: polling Kafka failed: %s; its partitions go back to what was applied",
                self.progress.replay_id,
                safe_text(failure, 500),
            )
            self.poll_failure = failure
        for tp, offset in positions.items():
            reader.seek(tp, offset)
        salvaged = await salvage.salvage(reader, positions)
        if not salvaged:  # not a record's fault: Kafka gets a moment
            await pause(1.0, self.stopping)
        return salvaged

    async def _apply(self, records: list[Record]) -> bool:
        """Apply one batch; False when stopped before it was applied (rolled back)."""
        batch = asyncio.ensure_future(self.batches.apply(records))
        outcome = await settle(batch, self.stopping, self.settings.shutdown_timeout / 2)
        if outcome is None:  # abandoned at the stop, or stopped while Postgres was away
            return False
        self.progress.add(records, outcome)
        self.on_progress(self.progress)
        await self._record_progress()
        return True

    async def _keep_rate(self) -> None:
        rate = self.plan.request.asked.rate_limit
        if rate is None:
            return
        ahead = self.progress.records / rate - self.progress.seconds
        if ahead > 0:
            await pause(ahead, self.stopping)  # the stop ends the wait early

    async def _record_progress(self) -> None:
        assert self.audit is not None
        p = self.progress
        try:
            await self.audit.execute(
                query("replay_progress"),
                p.replay_id,
                *p.counters(),
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            # The audit row lags; the replay itself is safe and goes on.
            log.warning("replay %s: progress not recorded: %r", p.replay_id, error)
            await self._reconnect_audit()

    async def _reconnect_audit(self) -> None:
        if self.audit is not None:
            self.audit.terminate()
        try:
            self.audit = await connections.connect(self.settings)
            # The lock went with the old session; the window between is not guarded.
            await self.audit.execute(query("replay_hold"), self.progress.replay_id)
        except (connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
            log.warning("replay %s: audit connection lost: %s", self.progress.replay_id, error)

    async def _finish(self) -> None:
        assert self.audit is not None
        p = self.progress
        stopped = {
            str(part.partition): p.stopped.get(part.partition, part.offsets.start - 1)
            for part in self.plan.partitions
        }
        for attempt in range(3):
            try:
                await self.audit.execute(
                    query("replay_finish"),
                    p.replay_id,
                    p.status,
                    *p.counters(),
                    p.error,
                    json.dumps(stopped),
                )
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("replay %s: result not recorded: %r", p.replay_id, error)
                if attempt < 2:
                    await self._reconnect_audit()
        log.error("replay %s: its row still says 'running'; it ended %s", p.replay_id, p.status)
