"""A real Debezium Postgres connector, in Kafka Connect, feeding a worker's projection.

Connect runs standalone (scripts/connect.sh), started here for this module unless
CRONSTREAM_CONNECT_URL points at one already running. Each test captures a table of its
own database with a connector of its own, makes changes of every kind, runs
`cronstream worker` on the connector's topic and waits until `entity_projection` holds
exactly the table: live rows as they are, deleted rows marked deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from cronstream.config.settings import Settings
from tests.integration import connect_service
from tests.integration import typed_columns as typed
from tests.integration.connect_service import Connect
from tests.integration.connectors import debezium_connector
from tests.integration.kafka_helpers import end_offsets, read_all, wait_for
from tests.integration.workers import WorkerProcess, checkpoints, external_worker

connect = connect_service.connect  # the module's Kafka Connect, a fixture
TABLE = "customers"
CREATE_TABLE = f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, tier int)"


# --- the table, and what Debezium and the worker made of it ---------------------------


@dataclass
class Changes:
    """Changes made to the table, counting the records Debezium writes for them."""

    connection: asyncpg.Connection
    records: int = 0
    ever: set[int] = field(default_factory=set)  # every id that ever had a row

    async def insert(self, *rows: tuple[int, str, int]) -> None:
        await self.connection.executemany(f"INSERT INTO {TABLE} VALUES ($1, $2, $3)", rows)
        self.records += len(rows)
        self.ever |= {row[0] for row in rows}

    async def update(self, row_id: int, name: str, tier: int) -> None:
        done = await self.connection.execute(
            f"UPDATE {TABLE} SET name = $2, tier = $3 WHERE id = $1", row_id, name, tier
        )
        self.records += int(done.split()[-1])

    async def delete(self, row_id: int) -> None:
        done = await self.connection.execute(f"DELETE FROM {TABLE} WHERE id = $1", row_id)
        self.records += 2 * int(done.split()[-1])  # the delete and its tombstone

    async def table(self) -> dict[str, dict[str, Any]]:
        rows = await self.connection.fetch(f"SELECT id, name, tier FROM {TABLE}")
        return {str(row["id"]): dict(row) for row in rows}


async def projection(database_url: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The projection's live rows by key, and its deleted keys."""
    rows = await projection_rows(database_url)
    live = {row["key"]: json.loads(row["payload"]) for row in rows if not row["deleted"]}
    return live, {row["key"] for row in rows if row["deleted"]}


async def projection_rows(database_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(
            "SELECT key, version, payload, deleted FROM entity_projection WHERE entity = $1",
            TABLE,
        )
        return rows
    finally:
        await connection.close()


async def wait_for_projection(
    database_url: str, changes: Changes, worker: WorkerProcess, deadline_s: float
) -> None:
    """Wait until the projection is the table: same live rows, every other id deleted."""
    seen: tuple[dict[str, dict[str, Any]], set[str]] = ({}, set())

    async def equal() -> bool:
        nonlocal seen
        if not worker.alive():  # not an AssertionError: the timeout's report would hide it
            raise RuntimeError(f"the worker exited:\n{worker.logs()[-3000:]}")
        seen = await projection(database_url)
        table = await changes.table()
        gone = {str(i) for i in changes.ever} - set(table)
        return seen == (table, gone)

    try:
        await wait_for(equal, deadline_s, "the projection to equal the table")
    except AssertionError:
        table = await changes.table()
        live, deleted = seen
        differ = {k: (live.get(k), table.get(k)) for k in set(live) | set(table)}
        differ = {k: pair for k, pair in differ.items() if pair[0] != pair[1]}
        raise AssertionError(
            f"projection != table after {deadline_s}s: (projection, table) by key: "
            f"{dict(list(differ.items())[:10])}; deleted in projection: {sorted(deleted)}"
        ) from None


async def wait_for_records(settings: Settings, topic: str, count: int, deadline_s: float) -> None:
    async def written() -> bool:
        return sum((await end_offsets(settings, topic)).values()) >= count

    await wait_for(written, deadline_s, f"{count} records on {topic}")


async def wait_for_checkpoint_at_end(settings: Settings, topic: str, deadline_s: float) -> None:
    """Wait until the worker's checkpoint is the last offset: tombstones included."""

    async def at_end() -> bool:
        ends = await end_offsets(settings, topic)
        return ends == {p: o + 1 for p, o in (await checkpoints(settings, topic)).items()}

    await wait_for(at_end, deadline_s, f"the checkpoint of {topic} to reach its last record")


async def dead_letters(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return [str(dict(row)) for row in await connection.fetch("SELECT * FROM dead_letters")]
    finally:
        await connection.close()


def lsns_by_row(records: list[ConsumerRecord[bytes, bytes]]) -> dict[str, list[int]]:
    """source.lsn of each row's changes, in topic order (tombstones have none)."""
    found: dict[str, list[int]] = {}
    for record in records:
        if record.value is not None:
            key = str(json.loads(record.key)["id"])
            found.setdefault(key, []).append(json.loads(record.value)["source"]["lsn"])
    return found


@asynccontextmanager
async def source_table(database_url: str) -> AsyncIterator[Changes]:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CREATE_TABLE)
        yield Changes(connection)
    finally:
        await connection.close()


# --- the tests ----------------------------------------------------------------------


async def test_every_kind_of_change_reaches_the_projection(
    connect: Connect,
    settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    engine: str,
) -> None:
    began = time.monotonic()
    async with source_table(database_url) as changes:
        # Rows that exist before the connector: its snapshot reads them (op r).
        await changes.insert(*[(i, f"before-{i}", 1) for i in range(1, 6)])
        async with debezium_connector(connect.url, database_url, [f"public.{TABLE}"]) as prefix:
            topic = f"{prefix}.public.{TABLE}"
            await wait_for_records(settings, topic, changes.records, 60)  # the snapshot
            await changes.insert(*[(i, f"new-{i}", 2) for i in range(6, 11)])
            await changes.update(1, "renamed", 1)
            await changes.update(2, "before-2", 3)
            await changes.delete(3)
            await changes.delete(6)
            await changes.insert((3, "back again", 4))  # a deleted id re-inserted
            async with changes.connection.transaction():  # several rows in one transaction
                await changes.insert((11, "in a transaction", 5))
                await changes.update(4, "first of two", 5)
                await changes.update(4, "second of two", 6)  # one row twice
                await changes.delete(5)
                await changes.update(7, "same transaction", 5)
            await changes.delete(8)
            await changes.delete(9)
            await changes.insert((9, "nine again", 7))
            await changes.update(9, "nine renamed", 7)
            records = await read_all(settings, topic, changes.records)
            assert len(records) == changes.records

            worker = external_worker(cli_env, engine, f"{topic}:debezium", tmp_path)
            worker.start()
            try:
                await wait_for_projection(database_url, changes, worker, 90)
                # And live, while the worker runs: a delete, a re-create, an update.
                await changes.delete(10)
                await changes.insert((6, "six again", 8))
                await changes.update(2, "live", 8)
                await wait_for_projection(database_url, changes, worker, 60)
                await wait_for_records(settings, topic, changes.records, 30)
                await wait_for_checkpoint_at_end(settings, topic, 60)
            finally:
                worker.stop()
            records = await read_all(settings, topic, changes.records)

    # The projection orders a row's changes by source.lsn: it must grow with each one,
    # across transactions and within one (row 4, updated twice in a transaction).
    lsns = lsns_by_row(records)
    for key, seq in lsns.items():
        assert seq == sorted(set(seq)), f"row {key}: source.lsn {seq} does not increase"
    assert len(lsns["4"]) == 3 and len(lsns["9"]) == 4, lsns
    versions = {row["key"]: row["version"] for row in await projection_rows(database_url)}
    assert versions == {k: seq[-1] for k, seq in lsns.items()}
    tombstones = [r for r in records if r.value is None]
    assert len(tombstones) == 6, "one tombstone per delete"
    ops = [json.loads(r.value)["op"] for r in records if r.value is not None]
    assert ops[:5] == ["r"] * 5 and set(ops[5:]) == {"c", "u", "d"}, ops
    assert await dead_letters(database_url) == [], "tombstones are no dead letters"
    print(f"\nrow 4's source.lsn (snapshot, then two updates in one transaction): {lsns['4']}")
    print(f"{len(records)} Debezium records, {engine} engine: {time.monotonic() - began:.1f}s")


async def make_changes(changes: Changes, rng: random.Random, stop: asyncio.Event) -> int:
    """Random inserts, updates and deletes, single and in transactions, until `stop`."""
    rounds = 0
    next_id = max(changes.ever) + 1
    while not stop.is_set():
        rounds += 1
        live = [int(k) for k in await changes.table()]
        async with changes.connection.transaction():
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if roll < 0.5 and live:
                    await changes.update(rng.choice(live), f"r{rounds}", rng.randint(1, 9))
                elif roll < 0.7 and live:
                    victim = rng.choice(live)
                    live.remove(victim)
                    await changes.delete(victim)
                else:
                    # A new id, or a deleted one back.
                    dead = sorted(changes.ever - set(live))
                    new_id = rng.choice(dead) if dead and rng.random() < 0.5 else next_id
                    next_id = max(next_id, new_id + 1)
                    live.append(new_id)
                    await changes.insert((new_id, f"i{rounds}", rng.randint(1, 9)))
        await asyncio.sleep(rng.uniform(0, 0.05))
    return rounds


# The batch engine only: the adapter runs inside the applier both engines share, the
# faust engine's record path is covered above and its crash safety by test_exactly_once.
@pytest.mark.parametrize("engine", ["batch"])
async def test_worker_killed_mid_stream_still_ends_equal(
    connect: Connect,
    settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    engine: str,
) -> None:
    rng = random.Random(20261127)
    began = time.monotonic()
    async with source_table(database_url) as changes:
        await changes.insert(*[(i, f"before-{i}", 1) for i in range(1, 31)])
        async with debezium_connector(connect.url, database_url, [f"public.{TABLE}"]) as prefix:
            topic = f"{prefix}.public.{TABLE}"
            await wait_for_records(settings, topic, changes.records, 60)
            worker = external_worker(cli_env, engine, f"{topic}:debezium", tmp_path)
            stop = asyncio.Event()
            changing = asyncio.create_task(make_changes(changes, rng, stop))
            try:
                worker.start()
                for _ in range(2):
                    await wait_for(worker.applied_a_batch, 60, "the worker to apply a batch")
                    await asyncio.sleep(rng.uniform(0, 0.5))
                    worker.kill()
                    worker.start()
                await wait_for(worker.applied_a_batch, 60, "the restarted worker to apply")
                await asyncio.sleep(1)  # a little more stream for the last worker
                stop.set()
                rounds = await changing
                await wait_for_records(settings, topic, changes.records, 60)
                await wait_for_projection(database_url, changes, worker, 90)
                await wait_for_checkpoint_at_end(settings, topic, 60)
            finally:
                stop.set()
                worker.stop()
                if not changing.done():
                    changing.cancel()  # and awaited: its connection closes before the loop
                    with contextlib.suppress(asyncio.CancelledError):
                        await changing
    assert await dead_letters(database_url) == []
    print(
        f"\n{rounds} transactions, {changes.records} records, 2 SIGKILLs, {engine} engine: "
        f"{time.monotonic() - began:.1f}s"
    )


# --- column types: a table of every type, decoded by the record's schema -------------

# Schemas off, with the settings the README gives for readable values: nothing is decoded.
READABLE = {
    "decimal.handling.mode": "string",
    "time.precision.mode": "isostring",
    "interval.handling.mode": "string",
}


@pytest.mark.parametrize("schemas", [True, False], ids=["schemas_on", "schemas_off"])
@pytest.mark.parametrize("engine", ["batch"])
async def test_every_column_type_reaches_the_projection_as_its_column(
    connect: Connect,
    settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    engine: str,
    schemas: bool,
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(typed.CREATE)
        await connection.execute(typed.ROWS)
        tables = [f"public.{typed.TABLE}"]
        extra = None if schemas else READABLE
        async with debezium_connector(connect.url, database_url, tables, schemas, extra) as prefix:
            topic = f"{prefix}.public.{typed.TABLE}"
            await wait_for_records(settings, topic, typed.ROW_COUNT, 60)
            worker = external_worker(cli_env, engine, f"{topic}:debezium", tmp_path)
            worker.start()
            try:
                # A live update and delete too: `before` and `after` are decoded alike.
                await connection.execute(f"UPDATE {typed.TABLE} SET amount = -7.5 WHERE id = 1")
                await connection.execute(f"DELETE FROM {typed.TABLE} WHERE id = 99999.99")
                await wait_for_records(settings, topic, typed.ROW_COUNT + 3, 60)
                await wait_for_checkpoint_at_end(settings, topic, 90)
            finally:
                worker.stop()
            records = await read_all(settings, topic, typed.ROW_COUNT + 3)
        projected, expected = await typed.projected_and_expected(connection)
        deleted = await connection.fetchval(
            "SELECT deleted FROM entity_projection WHERE entity = $1 AND key = '99999.99'",
            typed.TABLE,
        )
    finally:
        await connection.close()
    assert await dead_letters(database_url) == []
    assert deleted is True and set(projected) == {*expected, "99999.99"}
    if schemas:
        # Every column as Postgres renders it (typed.DIFFERENCES: where the README says not).
        found = {key: typed.differences(projected[key], row) for key, row in expected.items()}
        assert found == {key: {} for key in expected}, "(projected, expected) by row and column"
        return
    # Schemas off: each payload is Debezium's `after` as it is, nothing decoded.
    afters = {json.loads(r.key)["id"]: json.loads(r.value)["after"] for r in records if r.value}
    for key, payload in projected.items():
        if key != "99999.99":
            assert payload == json.loads(json.dumps(afters[key]), parse_float=Decimal)
    row = projected["1.00"]
    assert (row["amount"], row["wide"]) == ("-7.50", "-12345678901234567890.12345678901234567890")
    assert json.loads(row["jsb"]) == {"n": 420, "x": 1.5, "s": "é"}  # jsonb: a string
    assert (row["day"], row["span"]) == ("2024-02-29Z", "P1Y2M3DT4H5M6.78S")
