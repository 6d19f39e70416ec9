"""Schedulers against real Postgres and Kafka: failover, scanners, late commits, NOTIFY."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from cronstream import kafka
from cronstream.envelope import decode
from cronstream.settings import Settings
from schedulers.jobs import ScanConfig
from schedulers.scanner import Scanner
from tests.integration.conftest import run_cli
from tests.integration.kafka_helpers import read_all, wait_for
from tests.integration.workers import WorkerProcess, worker_env

CUSTOMERS = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    needs_sync boolean NOT NULL DEFAULT true,
    changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE TRIGGER customers_changed BEFORE INSERT OR UPDATE ON customers
FOR EACH ROW EXECUTE FUNCTION cronstream_set_changed_xid();
"""


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute(CUSTOMERS)
    yield connection
    await connection.close()


def env_for(cli_env: dict[str, str], jobs_file: Path | None = None) -> dict[str, str]:
    extra = {"CRONSTREAM_JOBS_FILE": str(jobs_file)} if jobs_file else {}
    return worker_env(cli_env, **extra)


def scheduler(env: dict[str, str], tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(env, tmp_path, name, args=["scheduler"])


async def wait_for_log(process: WorkerProcess, text: str, seconds: float = 60) -> None:
    await wait_for(lambda: text in process.logs(), seconds, f"{process.name} to log {text!r}")


@asynccontextmanager
async def leader_and_standby(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two schedulers: the first leads, the second stands by."""
    first, second = scheduler(env, tmp_path, "s1"), scheduler(env, tmp_path, "s2")
    first.start()
    try:
        await wait_for_log(first, "leading as")
        second.start()
        await wait_for_log(second, "standing by")
        yield first, second
    finally:
        first.stop()
        second.stop()


async def add_job(
    db: asyncpg.Connection, name: str, schedule: str, scan: dict[str, object], **columns: object
) -> None:
    await db.execute(
        "INSERT INTO cron_jobs (name, schedule, config, misfire_policy) VALUES ($1, $2, $3, $4)",
        name,
        schedule,
        json.dumps({"scan": scan}),
        columns.get("misfire_policy", "skip"),
    )


async def runs(db: asyncpg.Connection, job: str) -> list[asyncpg.Record]:
    found: list[asyncpg.Record] = await db.fetch(
        "SELECT scheduled_for, status, node, rows_emitted, error, started_at, finished_at "
        "FROM cron_runs "
        "WHERE job = $1 ORDER BY scheduled_for",
        job,
    )
    return found


async def test_standby_takes_over_when_the_leader_is_killed_and_no_tick_runs_twice(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_job(db, "every_second", "* * * * * *", {"mode": "flag", "table": "customers"})
    async with leader_and_standby(env_for(cli_env), tmp_path) as (first, second):
        await wait_for(lambda: _count(db, "every_second", 3), 30, "three ticks by the leader")
        first.kill()
        killed_at = datetime.now(UTC)
        await wait_for_log(second, "leading as", 30)

        async def new_leader_ran() -> bool:
            return any(r["started_at"] > killed_at for r in await runs(db, "every_second"))

        await wait_for(new_leader_ran, 30, "a tick run by the new leader")
        takeover = (datetime.now(UTC) - killed_at).total_seconds()
    rows = await runs(db, "every_second")
    ticks = [r["scheduled_for"] for r in rows]
    assert len(ticks) == len(set(ticks))  # also guaranteed by UNIQUE (job, scheduled_for)
    assert len({r["node"] for r in rows}) == 2
    assert {r["status"] for r in rows} <= {"succeeded", "failed", "skipped"}
    lags = sorted(
        (r["started_at"] - r["scheduled_for"]).total_seconds()
        for r in rows
        if r["status"] == "succeeded"
    )
    print(
        f"\ntakeover after SIGKILL: {takeover:.1f}s; tick lag median "
        f"{lags[len(lags) // 2] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms"
    )
    assert takeover < 15


async def _count(db: asyncpg.Connection, job: str, at_least: int) -> bool:
    return len(await runs(db, job)) >= at_least


async def test_a_job_added_at_run_time_fires_without_restart(
    db: asyncpg.Connection, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await db.execute(
        "INSERT INTO customers (id, name) SELECT n, 'c' || n FROM generate_series(1, 5) n"
    )
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:
        await wait_for_log(process, "leading as")
        await add_job(
            db,
            "late_addition",
            "* * * * * *",
            {"mode": "flag", "table": "customers", "entity": "customer"},
        )

        async def ran() -> bool:
            return any(
                r["status"] == "succeeded" and r["rows_emitted"] == 5
                for r in await runs(db, "late_addition")
            )

        await wait_for(ran, 30, "the new job's first run")
    finally:
        process.stop()
    records = await read_all(settings, settings.sync_topic, expected=5)
    assert sorted(decode(r.value).key for r in records) == ["1", "2", "3", "4", "5"]


async def test_notify_runs_the_scan_long_before_its_cron_tick(
    db: asyncpg.Connection, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await db.execute("INSERT INTO customers (id, name, needs_sync) VALUES (1, 'a', false)")
    await add_job(
        db,
        "fused",
        "0 3 * * *",  # once a day: the cron tick is not what runs it
        {
            "mode": "flag",
            "table": "customers",
            "entity": "customer",
            "notify_channel": "customers_changed",
        },
    )
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:
        await wait_for_log(process, "listening on")
        await kafka.ensure_topics(settings, [settings.sync_topic])
        began = time.monotonic()
        await db.execute("UPDATE customers SET name = 'b', needs_sync = true WHERE id = 1")
        notified_at = await db.fetchval(
            "SELECT clock_timestamp() FROM pg_notify('customers_changed', '1')"
        )
        records = await read_all(settings, settings.sync_topic, expected=1, deadline_s=10)
        latency = time.monotonic() - began
    finally:
        process.stop()
    assert [decode(r.value).payload["name"] for r in records] == ["b"]
    # The leader also scanned once when it began to listen; one of the runs emitted it.
    (run,) = [r for r in await runs(db, "fused") if r["rows_emitted"]]
    emitted = (run["finished_at"] - notified_at).total_seconds()
    print(f"\nNOTIFY to emitted and marked: {emitted * 1000:.0f} ms (debounce 200 ms included)")
    assert latency < 5


def scanner(
    job: str,
    config: ScanConfig,
    connection: asyncpg.Connection,
    producer: AIOKafkaProducer,
    settings: Settings,
) -> Scanner:
    return Scanner(job, config, connection, producer, settings.sync_topic, "trace")


async def test_watermark_scan_does_not_miss_a_row_whose_transaction_commits_late(
    db: asyncpg.Connection, database_url: str, settings: Settings
) -> None:
    await db.execute("INSERT INTO customers (id, name) VALUES (1, 'early'), (3, 'early')")
    config = ScanConfig(mode="watermark", table="customers", entity="customer")
    await kafka.ensure_topics(settings, [settings.sync_topic])
    producer = kafka.producer(settings)
    await producer.start()
    late = await asyncpg.connect(database_url)
    try:
        transaction = late.transaction()
        await transaction.start()
        await late.execute("INSERT INTO customers (id, name) VALUES (2, 'late')")
        # Committed after the late transaction began: a naive watermark would pass it.
        await db.execute("UPDATE customers SET name = 'after' WHERE id = 3")

        first = await scanner("wm", config, db, producer, settings).run()
        await transaction.commit()
        second = await scanner("wm", config, db, producer, settings).run()
        third = await scanner("wm", config, db, producer, settings).run()
    finally:
        await late.close()
        await producer.stop()
    assert first == 1  # only the row older than every in-flight transaction
    assert second == 2  # the late row and the one held back behind it
    assert third == 0
    records = await read_all(settings, settings.sync_topic, expected=3)
    assert sorted((decode(r.value).key, decode(r.value).payload["name"]) for r in records) == [
        ("1", "early"),
        ("2", "late"),
        ("3", "after"),
    ]


async def test_scanner_killed_between_kafka_ack_and_mark_re_emits_the_same_ids(
    db: asyncpg.Connection, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await db.execute(
        "INSERT INTO customers (id, name) SELECT n, 'c' || n FROM generate_series(1, 20) n"
    )
    # Marking hangs while this table has a row: the process is killed right after ack.
    await db.execute("""
        CREATE TABLE hold_marks (held boolean);
        INSERT INTO hold_marks VALUES (true);
        CREATE FUNCTION hold_mark() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            WHILE EXISTS (SELECT FROM hold_marks) LOOP PERFORM pg_sleep(0.1); END LOOP;
            RETURN NEW;
        END $$;
        CREATE TRIGGER hold BEFORE UPDATE OF needs_sync ON customers
        FOR EACH ROW EXECUTE FUNCTION hold_mark();
    """)
    await add_job(
        db, "flagged", "* * * * * *", {"mode": "flag", "table": "customers", "entity": "customer"}
    )
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:
        first = await read_all(settings, settings.sync_topic, expected=20, deadline_s=60)
        assert len(first) == 20  # acknowledged by Kafka; the mark is now hanging
        process.kill()
        await db.execute("DELETE FROM hold_marks")
        process.start()

        async def all_marked() -> bool:
            left: int = await db.fetchval("SELECT count(*) FROM customers WHERE needs_sync")
            return left == 0

        await wait_for(all_marked, 60, "the restarted scheduler to mark the rows")
    finally:
        process.stop()
    records = await read_all(settings, settings.sync_topic, expected=40)
    ids = [decode(r.value).id for r in records]
    assert len(records) == 40  # each row emitted twice: before the kill and after
    assert len(set(ids)) == 20  # with the same deterministic ids, which handlers dedupe
    assert {decode(r.value).id for r in first} == set(ids)


async def test_sigterm_releases_leadership_at_once(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_job(db, "every_second", "* * * * * *", {"mode": "flag", "table": "customers"})
    async with leader_and_standby(env_for(cli_env), tmp_path) as (first, second):
        code, seconds = first.terminate()
        assert code == 0, first.logs()[-2000:]
        assert seconds < 10
        began = time.monotonic()
        await wait_for_log(second, "leading as", 10)
        assert time.monotonic() - began < 5
    assert not [r for r in await runs(db, "every_second") if r["status"] == "running"]


async def test_run_shows_a_row_change_in_the_projection(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`cronstream run`: scheduler and worker in one process, the whole loop."""
    await db.execute("INSERT INTO customers (id, name) VALUES (7, 'Ada')")
    await add_job(
        db,
        "customers",
        "*/2 * * * * *",
        {"mode": "flag", "table": "customers", "entity": "customer"},
    )
    process = WorkerProcess(env_for(cli_env), tmp_path, "run", args=["run"])
    process.start()

    async def projected(name: str) -> bool:
        found = await db.fetchval(
            "SELECT payload->>'name' FROM entity_projection WHERE entity = 'customer' AND key = '7'"
        )
        return bool(found == name)

    try:
        await wait_for(lambda: projected("Ada"), 60, "the row in the projection")
        await db.execute(
            "UPDATE customers SET name = 'Ada Lovelace', needs_sync = true WHERE id = 7"
        )
        await wait_for(lambda: projected("Ada Lovelace"), 30, "the change in the projection")
        code, _ = process.terminate()
        assert code == 0, process.logs()[-2000:]
    finally:
        process.stop()


async def test_jobs_list_shows_schedule_zone_policy_last_and_next_run(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(
        '[jobs.from_file]\nschedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
        '[jobs.from_file.scan]\nmode = "flag"\ntable = "customers"\n'
    )
    await add_job(db, "from_table", "*/5 * * * *", {"mode": "outbox", "table": "outbox"})
    await db.execute(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node, rows_emitted) "
        "VALUES ('x', 'from_table', '2027-01-01T00:05:00Z', 'succeeded', 'n', 42)"
    )
    result = run_cli(["jobs", "list", "--jobs-file", str(jobs_file)], cli_env)
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "30 2 * * *" in lines["from_file"] and "Europe/Berlin" in lines["from_file"]
    assert "T02:30:00+0" in lines["from_file"]  # next run, in the job's zone
    assert "succeeded 2027-01-01T00:05:00+00:00 (42 rows)" in lines["from_table"]

    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[jobs.bad]\nschedule = "61 * * * *"\n[jobs.bad.scan]\nmode = "flag"\ntable = "t"\n'
    )
    result = run_cli(["jobs", "list", "--jobs-file", str(broken)], cli_env)
    assert result.returncode == 2
    assert "job 'bad'" in result.stderr and "not a valid cron expression" in result.stderr


async def test_a_leader_whose_lock_connection_drops_stands_down(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_job(db, "every_second", "* * * * * *", {"mode": "flag", "table": "customers"})
    async with leader_and_standby(env_for(cli_env), tmp_path) as (first, second):
        # Cut the leader's lock connection, as a network failure or a DBA would.
        terminated = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert terminated == 1
        await wait_for_log(first, "lost the leader lock", 30)
        await wait_for(
            lambda: "leading as" in second.logs() or first.logs().count("leading as") > 1,
            30,
            "a scheduler to lead again",
        )
        assert first.alive() and second.alive()
    ticks = [r["scheduled_for"] for r in await runs(db, "every_second")]
    assert len(ticks) == len(set(ticks))
