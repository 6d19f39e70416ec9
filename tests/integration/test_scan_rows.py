"""Scanners against hostile source rows: one bad row is recorded and passed, never fatal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from cronstream.config.settings import Settings
from cronstream.events.envelope import decode
from cronstream.kafka import clients
from cronstream.schedulers.jobs import JobError, ScanConfig
from cronstream.schedulers.scan import ScanBlocked, Scanner, scanner_for
from tests.integration.kafka_helpers import read_all, wait_for

# A text key that may be NULL, so flag and watermark mode can meet the keys they refuse.
ITEMS = """
CREATE TABLE items (
    code text,
    name text NOT NULL DEFAULT 'x',
    extra json,
    needs_sync boolean NOT NULL DEFAULT true,
    changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE TRIGGER items_changed BEFORE INSERT OR UPDATE ON items
FOR EACH ROW EXECUTE FUNCTION cronstream_set_changed_xid();
"""
BIG = "repeat('x', 1100000)"  # over the producer's max_request_size of 1 MiB
LONG = "repeat('k', 1001)"  # the envelope takes keys of up to 1,000 characters
CAPPED = "k" * 471 + "... (sha256 "  # how a long key is recorded: cut, then its hash

OUTBOX = "INSERT INTO outbox (entity, key, version, payload) VALUES "
ITEM = "INSERT INTO items (code, name) VALUES "
EXTRA = "INSERT INTO items (code, extra) VALUES "
DEEP = "repeat('[', 5000) || repeat(']', 5000)"
DEEPER_THAN_A_PAYLOAD_MAY_BE = "repeat('[', 256) || repeat(']', 256)"
CONFIGS = {
    "outbox": ScanConfig(mode="outbox", table="outbox"),
    "flag": ScanConfig(mode="flag", table="items", key_column="code", entity="item"),
    "watermark": ScanConfig(mode="watermark", table="items", key_column="code", entity="item"),
}
GOOD = {
    "outbox": (OUTBOX + "('item', 'a', 1, '{}')", OUTBOX + "('item', 'z', 1, '{}')"),
    "flag": (ITEM + "('a', 'x')", ITEM + "('z', 'x')"),
    "watermark": (ITEM + "('a', 'x')", ITEM + "('z', 'x')"),
}

# mode, the bad row, its key as recorded, a part of the reason
HOSTILE = [
    ("outbox", OUTBOX + "('order item', 'b', 1, '{}')", "b", "entity"),
    ("outbox", OUTBOX + "('item', 'b', 1, '[1]')", "b", "JSON array, not an object"),
    ("outbox", OUTBOX + "('item', 'b', 1, '\"text\"')", "b", "JSON string, not an object"),
    ("outbox", OUTBOX + "('item', '', 1, '{}')", "", "field 'key'"),
    ("outbox", OUTBOX + f"('item', {LONG}, 1, '{{}}')", CAPPED, "at most 1000 characters"),
    ("outbox", OUTBOX + "('item', 'b', -1, '{}')", "b", "greater than or equal to 0"),
    ("outbox", OUTBOX + f"('item', 'b', 1, jsonb_build_object('x', {BIG}))", "b", "larger than"),
    ("flag", ITEM + "(NULL, 'x')", None, "key column code is NULL in 1 row"),
    ("flag", ITEM + f"({LONG}, 'x')", CAPPED, "at most 1000 characters"),
    ("flag", ITEM + "('', 'x')", "", "field 'key'"),
    ("flag", ITEM + f"('b', {BIG})", "b", "larger than Kafka accepts"),
    ("flag", EXTRA + "('b', '{\"x\": \"\\u0000\"}')", "b", "contains \\u0000"),
    ("flag", EXTRA + f"('b', ({DEEP})::json)", "b", "nested too deeply"),
    ("flag", EXTRA + f"('b', ({DEEPER_THAN_A_PAYLOAD_MAY_BE})::json)", "b", "levels deep"),
    (
        "outbox",
        OUTBOX
        + f"('item', 'b', 1, jsonb_build_object('x', ({DEEPER_THAN_A_PAYLOAD_MAY_BE})::jsonb))",
        "b",
        "levels deep",
    ),
    ("watermark", ITEM + "(NULL, 'x')", None, "key column code is NULL in 1 row"),
    ("watermark", ITEM + f"({LONG}, 'x')", CAPPED, "at most 1000 characters"),
    ("watermark", ITEM + f"('b', {BIG})", "b", "larger than Kafka accepts"),
    ("watermark", EXTRA + "('b', '{\"x\": \"\\ud800\"}')", "b", "lone surrogate"),
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute(ITEMS)
    yield connection
    await connection.close()


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await clients.ensure_topics(settings, [settings.sync_topic])
    started = clients.producer(settings)
    await started.start()
    yield started
    await started.stop()


async def scan(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings, config: ScanConfig
) -> Scanner:
    if config.mode == "watermark":
        # Another database's open transaction holds every watermark back: wait it out.
        async def settled() -> bool:
            query = "SELECT max(changed_xid) < pg_snapshot_xmin(pg_current_snapshot()) FROM items"
            return bool(await db.fetchval(query))

        await wait_for(settled, 60, "no transaction older than the rows to be in flight")
    scanner = scanner_for("job", config, db, producer, settings.sync_topic, "trace")
    await scanner.scan()
    return scanner


async def rejects(db: asyncpg.Connection) -> list[asyncpg.Record]:
    found: list[asyncpg.Record] = await db.fetch(
        "SELECT job, source_row, key, reason, mode, source_table, times_seen "
        "FROM scan_rejected_rows ORDER BY source_row"
    )
    return found


async def still_pending(db: asyncpg.Connection, mode: str) -> int:
    if mode == "outbox":
        return int(await db.fetchval("SELECT count(*) FROM outbox WHERE emitted_at IS NULL"))
    return int(await db.fetchval("SELECT count(*) FROM items WHERE needs_sync"))


@pytest.mark.parametrize(
    ("mode", "bad_row", "key", "reason"), HOSTILE, ids=[f"{h[0]}: {h[3]}" for h in HOSTILE]
)
async def test_a_bad_row_is_recorded_and_the_rows_around_it_are_emitted(
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    bad_row: str,
    key: str | None,
    reason: str,
) -> None:
    before, after = GOOD[mode]
    for statement in (before, bad_row, after):  # one transaction each: ordered xids
        await db.execute(statement)
    config = CONFIGS[mode]
    caplog.set_level(logging.INFO, logger="cronstream.schedulers.scan")

    first = await scan(db, producer, settings, config)

    assert (first.emitted, first.rejected) == (2, 1)
    [record] = await rejects(db)
    assert (record["job"], record["mode"]) == ("job", mode)
    if key == CAPPED:
        assert record["key"].startswith(CAPPED) and len(record["key"]) == 500
    else:
        assert record["key"] == key
    assert reason in record["reason"]
    assert record["source_table"] == config.table
    [line] = [r for r in caplog.records if "rejected:" in r.getMessage()]
    message = line.getMessage()
    assert message.startswith("job job: ") and reason in message
    named = "key NULL" if key is None else "key 'kkk" if key == CAPPED else f"key {key!r}"
    assert named in message
    assert line.exc_info is None and "\n" not in message
    assert "scan done: 2 emitted, 1 rejected" in caplog.text
    if mode != "watermark":  # the watermark passes a rejected row; the others keep it
        assert await still_pending(db, mode) == 1

    second = await scan(db, producer, settings, config)

    assert second.emitted == 0
    records = await read_all(settings, settings.sync_topic, expected=2)
    assert sorted(decode(r.value).key for r in records) == ["a", "z"]
    [again] = await rejects(db)
    assert again["times_seen"] == (1 if mode == "watermark" else 2)


@pytest.mark.parametrize("mode", ["flag", "outbox"])
async def test_a_page_full_of_bad_rows_does_not_stop_the_run(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings, mode: str
) -> None:
    before, after = GOOD[mode]
    await db.execute(before)
    if mode == "flag":
        await db.execute(
            f"INSERT INTO items (code) SELECT {LONG} || n FROM generate_series(1, 5) n"
        )
    else:
        await db.execute(OUTBOX + "('item', 'b1', -1, '{}'), ('item', 'b2', 1, '[]')")
        await db.execute(OUTBOX + "('bad entity', 'b3', 1, '{}'), ('item', '', 1, '{}')")
        await db.execute(OUTBOX + "('item', 'b5', 1, '1')")
    await db.execute(after)
    config = CONFIGS[mode].model_copy(update={"batch_size": 2})

    scanner = await scan(db, producer, settings, config)

    assert (scanner.emitted, scanner.rejected) == (2, 5)
    assert len(await rejects(db)) == 5
    assert await still_pending(db, mode) == 5


async def test_a_fixed_row_is_emitted_and_its_record_goes(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    await db.execute(OUTBOX + "('order item', 'b', 1, '{}'), ('item', 'a', 1, '{}')")
    config = CONFIGS["outbox"]
    await scan(db, producer, settings, config)
    assert len(await rejects(db)) == 1

    await db.execute("UPDATE outbox SET entity = 'order' WHERE key = 'b'")
    scanner = await scan(db, producer, settings, config)

    assert (scanner.emitted, scanner.rejected) == (1, 0)
    assert await rejects(db) == []
    records = await read_all(settings, settings.sync_topic, expected=2)
    assert sorted((decode(r.value).entity, decode(r.value).key) for r in records) == [
        ("item", "a"),
        ("order", "b"),
    ]


@pytest.mark.parametrize("mode", ["flag", "watermark"])
async def test_a_null_key_given_a_key_is_emitted_and_its_record_goes(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings, mode: str
) -> None:
    await db.execute(ITEM + "(NULL, 'x')")
    config = CONFIGS[mode]
    await scan(db, producer, settings, config)
    assert [r["reason"] for r in await rejects(db)] == ["key column code is NULL in 1 row(s)"]

    await db.execute("UPDATE items SET code = '5' WHERE code IS NULL")
    scanner = await scan(db, producer, settings, config)

    assert (scanner.emitted, scanner.rejected) == (1, 0)
    assert await rejects(db) == []


async def test_an_oversized_outbox_event_is_rejected_and_the_rest_goes_out(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    await db.execute(OUTBOX + "('item', 'a', 1, '{}')")
    await db.execute(OUTBOX + f"('item', 'huge', 1, jsonb_build_object('x', {BIG}))")
    await db.execute(OUTBOX + "('item', 'z', 1, '{}')")

    scanner = await scan(db, producer, settings, CONFIGS["outbox"])

    assert (scanner.emitted, scanner.rejected) == (2, 1)
    [record] = await rejects(db)
    assert record["key"] == "huge"
    assert "larger than Kafka accepts" in record["reason"]
    pending = await db.fetchval("SELECT key FROM outbox WHERE emitted_at IS NULL")
    assert pending == "huge"
    records = await read_all(settings, settings.sync_topic, expected=2)
    assert sorted(decode(r.value).key for r in records) == ["a", "z"]


async def test_a_topic_limit_below_the_producers_fails_the_run_and_marks_nothing(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """The broker refuses the whole batch: no row can be told apart, none is marked."""
    topic = f"{settings.sync_topic}.small"
    admin = AIOKafkaAdminClient(**clients.connection_options(settings))
    await admin.start()
    try:
        limit = {"max.message.bytes": "3000"}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=limit)])
    finally:
        await admin.close()
    await db.execute(OUTBOX + "('item', 'a', 1, '{}')")
    await db.execute(OUTBOX + "('item', 'big', 1, jsonb_build_object('x', repeat('x', 5000)))")

    scanner = scanner_for("job", CONFIGS["outbox"], db, producer, topic, "trace")
    with pytest.raises(MessageSizeTooLargeError):
        await scanner.scan()

    assert await still_pending(db, "outbox") == 2
    assert await rejects(db) == []


async def flagged(db: asyncpg.Connection) -> list[str]:
    return [r["code"] for r in await db.fetch("SELECT code FROM items WHERE needs_sync ORDER BY 1")]


async def test_a_later_page_kafka_refuses_fails_the_run_and_the_pages_before_stay_marked(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """Pages overlap (the next is read while one is sent): still, a page is marked only
    once Kafka acknowledged it, and none after a refused one is."""
    topic = f"{settings.sync_topic}.small"
    admin = AIOKafkaAdminClient(**clients.connection_options(settings))
    await admin.start()
    try:
        limit = {"max.message.bytes": "3000"}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=limit)])
    finally:
        await admin.close()
    await db.execute(ITEM + ", ".join(f"('p{n:02}', 'x')" for n in range(1, 11)))
    await db.execute("UPDATE items SET name = repeat('x', 5000) WHERE code = 'p05'")
    config = ScanConfig(mode="flag", table="items", key_column="code", entity="item", batch_size=2)

    scanner = scanner_for("job", config, db, producer, topic, "trace")
    with pytest.raises(MessageSizeTooLargeError):
        await scanner.scan()

    assert await flagged(db) == [f"p{n:02}" for n in range(5, 11)]
    assert scanner.emitted == 4


async def test_a_page_whose_mark_fails_fails_the_run_and_no_later_page_is_marked(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """The page after it may have been sent meanwhile: unmarked, it is emitted again."""
    await db.execute(ITEM + ", ".join(f"('p{n:02}', 'x')" for n in range(1, 11)))
    await db.execute(
        """
        CREATE FUNCTION refuse_p05() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'p05 may not change'; END $$;
        CREATE TRIGGER items_refuse_p05 BEFORE UPDATE ON items
        FOR EACH ROW WHEN (OLD.code = 'p05') EXECUTE FUNCTION refuse_p05();
        """
    )
    config = ScanConfig(mode="flag", table="items", key_column="code", entity="item", batch_size=2)

    scanner = scanner_for("job", config, db, producer, settings.sync_topic, "trace")
    with pytest.raises(asyncpg.RaiseError, match="p05 may not change"):
        await scanner.scan()
    assert await flagged(db) == [f"p{n:02}" for n in range(5, 11)]

    await db.execute("DROP TRIGGER items_refuse_p05 ON items")
    await scan(db, producer, settings, config)
    assert await flagged(db) == []
    records = await read_all(settings, settings.sync_topic, expected=10)
    assert {decode(r.value).key for r in records} == {f"p{n:02}" for n in range(1, 11)}


async def test_a_mixed_case_table_is_scanned(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    await db.execute(
        'CREATE TABLE "Orders" (id integer PRIMARY KEY, needs_sync boolean NOT NULL DEFAULT true);'
        'INSERT INTO "Orders" (id) VALUES (1), (2)'
    )

    scanner = await scan(db, producer, settings, ScanConfig(mode="flag", table="Orders"))

    assert scanner.emitted == 2
    assert await db.fetchval('SELECT count(*) FROM "Orders" WHERE needs_sync') == 0
    records = await read_all(settings, settings.sync_topic, expected=2)
    assert sorted(decode(r.value).kafka_key for r in records) == [b"Orders:1", b"Orders:2"]


async def test_a_name_that_resolves_to_a_system_catalog_is_refused_and_nothing_is_sent(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    """pg_database is readable by any role, with a boolean to flag on; unqualified, the
    search_path finds it in pg_catalog. A user table of that name scans when qualified."""
    catalog = ScanConfig(
        mode="flag", table="pg_database", key_column="oid", flag_column="datallowconn"
    )
    with pytest.raises(JobError) as raised:
        await scan(db, producer, settings, catalog)
    assert str(raised.value) == (
        "job 'job': table pg_database is pg_catalog.pg_database, which is in a system schema: "
        "scans read only user tables"
    )
    await db.execute(
        "CREATE TABLE public.pg_database (id integer PRIMARY KEY, needs_sync boolean DEFAULT true);"
        "INSERT INTO public.pg_database (id) VALUES (1)"
    )
    with pytest.raises(JobError, match=r"is pg_catalog\.pg_database"):
        await scan(db, producer, settings, ScanConfig(mode="flag", table="pg_database"))
    mine = await scan(db, producer, settings, ScanConfig(mode="flag", table="public.pg_database"))
    assert mine.emitted == 1
    # The only record on the topic is the user table's row: no database was sent.
    records = await read_all(settings, settings.sync_topic, expected=1)
    assert [decode(r.value).kafka_key for r in records] == [b"pg_database:1"]


async def test_a_table_the_role_may_not_read_fails_in_one_line(
    db: asyncpg.Connection, producer: AIOKafkaProducer, settings: Settings
) -> None:
    await db.execute(
        "CREATE TABLE private (id integer PRIMARY KEY, needs_sync boolean DEFAULT true);"
        "REVOKE SELECT ON private FROM current_user"
    )
    with pytest.raises(ScanBlocked) as raised:
        await scan(db, producer, settings, ScanConfig(mode="flag", table="private"))
    assert str(raised.value) == (
        "job 'job': scanning table private: permission denied for table private "
        "(grant the scheduler's role what the job needs)"
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("Missing", "job 'job': table Missing does not exist"),
        ("public.Missing", "job 'job': table public.Missing does not exist"),
        ("items", "job 'job': table items has no column id"),
        ("ITEMS", "table ITEMS does not exist (names are case-sensitive; items exists)"),
    ],
)
async def test_a_table_that_does_not_exist_is_named(
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    settings: Settings,
    table: str,
    message: str,
) -> None:
    with pytest.raises(JobError) as raised:
        await scan(db, producer, settings, ScanConfig(mode="flag", table=table))
    assert message in str(raised.value)
