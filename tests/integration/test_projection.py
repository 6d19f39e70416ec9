"""The projection's "newest wins" rule across create, update, delete and re-create, and
a worker on a Debezium topic fed by hand: tombstones, garbage and what each becomes.

The real connector's records are in test_debezium.py; here every record is chosen, so
late and out-of-order changes can be sent on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event, decode
from cronstream.handlers.projection import project
from cronstream.kafka import clients
from cronstream.streams.replay import schema_for
from tests.integration.commands import run_cli
from tests.integration.workers import (
    WorkerProcess,
    assert_dead_lettered,
    external_worker,
    send_records,
    wait_until_at_end,
)

T0 = datetime(2027, 1, 1, tzinfo=UTC)
REBUILT = schema_for("rebuild.dbz")  # the schema `--consumer rebuild.dbz` rebuilds into


def change(kind: str, key: str, version: int | None, minutes: int = 0, **payload: Any) -> Event:
    return Event.new(
        type=f"customers_{kind}",
        source="t",
        entity="customers",
        key=key,
        version=version,
        payload=payload,
        occurred_at=T0 + timedelta(minutes=minutes),
    )


async def row(connection: asyncpg.Connection, key: str) -> tuple[int | None, bool, dict[str, Any]]:
    found = await connection.fetchrow(
        "SELECT version, deleted, payload FROM entity_projection "
        "WHERE entity = 'customers' AND key = $1",
        key,
    )
    assert found is not None
    return found["version"], found["deleted"], json.loads(found["payload"])


async def apply(connection: asyncpg.Connection, *events: Event) -> None:
    async with connection.transaction():
        await project(list(events), connection)


async def test_a_delete_marks_the_row_and_only_a_newer_change_brings_it_back(
    connection: asyncpg.Connection,
) -> None:
    await apply(connection, change("created", "1", 10, name="Ada"))
    await apply(connection, change("updated", "1", 20, name="Ada L."))
    await apply(connection, change("deleted", "1", 30, id=1))
    assert await row(connection, "1") == (30, True, {"id": 1})
    # Older changes delivered late (another source, a replay) cannot resurrect it...
    await apply(connection, change("created", "1", 10, name="Ada"))
    await apply(connection, change("updated", "1", 29, name="late"))
    assert await row(connection, "1") == (30, True, {"id": 1})
    # ...a newer one (the row inserted again) can, and a late delete cannot undo that.
    await apply(connection, change("created", "1", 40, name="Ada again"))
    await apply(connection, change("deleted", "1", 30, id=1))
    assert await row(connection, "1") == (40, False, {"name": "Ada again"})


async def test_within_one_batch_the_newest_change_wins_whatever_the_order(
    connection: asyncpg.Connection,
) -> None:
    await apply(
        connection,
        change("created", "2", 50, name="re-created"),
        change("deleted", "2", 40, id=2),
        change("created", "2", 10, name="first"),
        change("deleted", "3", 20, id=3),
        change("updated", "3", 10, name="gone"),
    )
    assert await row(connection, "2") == (50, False, {"name": "re-created"})
    assert await row(connection, "3") == (20, True, {"id": 3})


async def test_a_decoded_payload_is_stored_as_it_came_digits_and_all(
    connection: asyncpg.Connection,
) -> None:
    payload = (
        '{"pi": 3.14159265358979323846, "big": 123456789012345678901234567890, "tiny": 1.50,'
        ' "text": "\\u00e9 \\"q\\" \\n \\ud83d\\ude00 \U0001f600",'
        ' "nested": {"a": [1, null, true]}}'
    )
    value = (
        '{"id": "e-9", "type": "customers_updated", "source": "t", "entity": "customers",'
        ' "key": 9, "version": 3, "occurred_at": "2027-01-01T01:00:00.123456+01:00",'
        f' "payload": {payload}}}'
    ).encode()
    event = decode(value)
    built = Event.new(
        type="customers_created", source="t", entity="customers", key="10",
        payload={"n": Decimal("12345678901234567890.12"), "x": 2.5}, occurred_at=T0,
    )  # fmt: skip
    await apply(connection, event, built)
    stored = await connection.fetch(
        "SELECT key, version, occurred_at, payload::text AS text, event_id, source, deleted"
        " FROM entity_projection WHERE entity = 'customers' ORDER BY key"
    )
    assert [tuple(r.values()) for r in stored] == [
        ("10", None, T0, '{"n": 12345678901234567890.12, "x": 2.5}', built.id, "t", False),
        (
            "9",
            3,
            datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
            '{"pi": 3.14159265358979323846, "big": 123456789012345678901234567890,'
            ' "text": "\u00e9 \\"q\\" \\n \U0001f600 \U0001f600", "tiny": 1.50,'
            ' "nested": {"a": [1, null, true]}}',
            "e-9",
            "t",
            False,
        ),
    ]


async def test_without_versions_time_orders_deletes_too(connection: asyncpg.Connection) -> None:
    await apply(connection, change("created", "4", None, minutes=1, name="x"))
    await apply(connection, change("deleted", "4", None, minutes=2, id=4))
    await apply(connection, change("updated", "4", None, minutes=1, name="stale"))
    assert await row(connection, "4") == (None, True, {"id": 4})
    await apply(connection, change("created", "4", None, minutes=3, name="back"))
    assert await row(connection, "4") == (None, False, {"name": "back"})


def debezium(op: str, row_id: int, lsn: int, **columns: Any) -> tuple[bytes, bytes]:
    source: dict[str, Any] = {
        "connector": "postgresql",
        "name": "dbz",
        "db": "shop",
        "schema": "public",
    }
    source |= {"table": "customers", "lsn": lsn, "ts_ms": 1795000000000 + lsn, "txId": lsn}
    image = {"id": row_id, **columns}
    value = {
        "before": image if op == "d" else None,
        "after": None if op == "d" else image,
        "source": source,
        "op": op,
    }
    return json.dumps({"id": row_id}).encode(), json.dumps(value).encode()


@pytest.fixture
def worker(
    cli_env: dict[str, str], engine: str, topic: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    process = external_worker(cli_env, engine, f"{topic}.dbz:debezium", tmp_path)
    yield process
    process.stop()


# The batch engine only: the adapter runs inside the applier both engines share, and the
# faust engine's record path (keys, headers) is covered by test_cloudevents.py.
@pytest.mark.parametrize("engine", ["batch"])
async def test_a_debezium_topic_projects_changes_acknowledges_tombstones_and_dead_letters_garbage(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    topic = f"{settings.sync_topic}.dbz"
    records: list[tuple[bytes | None, bytes | None]] = [
        debezium("r", 1, 100, name="snapshotted"),
        debezium("c", 2, 110, name="Bo"),
        debezium("u", 1, 120, name="updated"),
        debezium("d", 2, 130),
        (json.dumps({"id": 2}).encode(), None),  # the tombstone after the delete
        debezium("c", 2, 140, name="Bo again"),
        debezium("d", 1, 150),
        (json.dumps({"id": 1}).encode(), None),
        (b'{"id":3}', b"\xffnot json"),
        (b'{"id":3}', json.dumps({"op": "t", "source": {}}).encode()),
        (None, debezium("c", 3, 160, name="no key")[1]),
        debezium("c", 4, 170, name="after the garbage"),
    ]
    garbage = {
        8: "invalid Debezium record: the value is not UTF-8",
        9: "invalid Debezium record: field 'op': 't' (truncate) events are not mapped",
        10: "invalid Debezium record: field '<key>': is empty",
    }
    # One partition, so that offsets are the list's positions.
    await clients.ensure_topics(settings.model_copy(update={"topic_partitions": 1}), [topic])
    await send_records(settings, [clients.Message(topic, value, key) for key, value in records])

    worker.start()
    await wait_until_at_end(settings, worker, topic, 60)
    connection = await asyncpg.connect(database_url)
    try:
        projected = {
            r["key"]: (r["version"], r["deleted"], json.loads(r["payload"]))
            for r in await connection.fetch(
                "SELECT key, version, deleted, payload FROM entity_projection "
                "WHERE entity = 'customers'"
            )
        }
        recorded = await connection.fetch('SELECT "offset", error FROM dead_letters')
    finally:
        await connection.close()
    assert projected == {
        "1": (150, True, {"id": 1}),
        "2": (140, False, {"id": 2, "name": "Bo again"}),
        "4": (170, False, {"id": 4, "name": "after the garbage"}),
    }
    # Tombstones are neither applied nor dead-lettered; garbage is, each with its reason.
    assert sorted(r["offset"] for r in recorded) == sorted(garbage)
    await assert_dead_lettered(settings, topic, garbage)

    # A rebuild replays the topic through the same adapter into a schema of its own.
    worker.stop()
    rebuilt = run_cli(
        ["replay", "--topic", topic, "--from-beginning", "--consumer", "rebuild.dbz"], worker.env
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    connection = await asyncpg.connect(database_url)
    try:
        columns = "entity, key, version, deleted, payload"
        live, rebuilt_table = "entity_projection", f"{REBUILT}.entity_projection"
        differ = await connection.fetch(
            f"(SELECT {columns} FROM {rebuilt_table} EXCEPT SELECT {columns} FROM {live}) "
            f"UNION ALL (SELECT {columns} FROM {live} EXCEPT SELECT {columns} FROM {rebuilt_table})"
        )
        assert await connection.fetchval(f"SELECT count(*) FROM {rebuilt_table}") == 3
    finally:
        await connection.close()
    assert differ == []
    # A rebuild schema older than a migration of its tables is refused, not half-applied.
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"ALTER TABLE {REBUILT}.entity_projection DROP COLUMN deleted")
    finally:
        await connection.close()
    resumed = run_cli(
        ["replay", "--topic", topic, "--from-beginning", "--consumer", "rebuild.dbz"], worker.env
    )
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert f"{REBUILT}.entity_projection lacks column(s) deleted" in resumed.stderr

    # Its dead-letter topic holds Debezium records: read as Debezium, and said so.
    dlq = run_cli(
        ["replay", "--topic", settings.dlq_topic(topic), "--from-beginning", "--dry-run"],
        worker.env,
    )
    assert dlq.returncode == 0, dlq.stderr
    assert f"holds dead letters of {topic}: read as debezium" in dlq.stderr
