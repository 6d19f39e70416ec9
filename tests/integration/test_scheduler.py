"""Schedulers against real Postgres and Kafka: failover, scanners, late commits, NOTIFY."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from cronstream.config.settings import Settings
from cronstream.events.envelope import decode
from cronstream.kafka import clients
from cronstream.schedulers.jobs import ScanConfig
from cronstream.schedulers.listener import LISTEN_APPLICATION
from cronstream.schedulers.runs import Runs
from cronstream.schedulers.scan import Scanner, scanner_for
from cronstream.schedulers.sql import query
from tests.integration.commands import run_cli
from tests.integration.kafka_helpers import read_all, wait_for
from tests.integration.schedulers_helpers import add_job, scheduler
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


async def add_fused_job(db: asyncpg.Connection) -> None:
    """A daily job fused with NOTIFY on customers_changed, and one row not yet flagged."""
    await db.execute("INSERT INTO customers (id, name, needs_sync) VALUES (1, 'a', false)")
    scan: dict[str, object] = {"mode": "flag", "table": "customers", "entity": "customer"}
    # Once a day: the cron tick is not what runs it.
    await add_job(db, "fused", "0 3 * * *", scan | {"notify_channel": "customers_changed"})


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
    await add_fused_job(db)
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:
        await wait_for_log(process, "listening on")
        await clients.ensure_topics(settings, [settings.sync_topic])
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
    return scanner_for(job, config, connection, producer, settings.sync_topic, "trace")


async def test_watermark_scan_does_not_miss_a_row_whose_transaction_commits_late(
    db: asyncpg.Connection, database_url: str, settings: Settings
) -> None:
    """Transaction ids are the cluster's, so a transaction of any database (another
    test's, running beside this one) holds the watermark back too: the scans that follow
    the commit are repeated until the watermark passes it, not counted on the first."""
    await db.execute("INSERT INTO customers (id, name) VALUES (1, 'early'), (3, 'early')")
    config = ScanConfig(mode="watermark", table="customers", entity="customer")
    await clients.ensure_topics(settings, [settings.sync_topic])
    producer = clients.producer(settings)
    await producer.start()
    late = await asyncpg.connect(database_url)
    emitted = 0

    async def scan() -> int:
        nonlocal emitted
        emitted += await scanner("wm", config, db, producer, settings).scan()
        return emitted

    try:
        transaction = late.transaction()
        await transaction.start()
        await late.execute("INSERT INTO customers (id, name) VALUES (2, 'late')")
        # Committed after the late transaction began: a naive watermark would pass it.
        await db.execute("UPDATE customers SET name = 'after' WHERE id = 3")

        # At most the row older than every in-flight transaction; never the two after it.
        first = await scan()
        assert first <= 1
        if first:
            [early] = await read_all(settings, settings.sync_topic, expected=1)
            assert decode(early.value).key == "1"
        await transaction.commit()

        async def all_emitted() -> bool:
            return await scan() >= 3

        await wait_for(all_emitted, 30, "the rows after the late commit to be emitted")
        assert await scan() == 3  # and nothing twice
    finally:
        await late.close()
        await producer.stop()
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
    # A run's error quotes untrusted text: shown as it is, never read as rich markup
    # (an unbalanced closing tag would end the command with a traceback).
    await add_job(db, "failing", "*/5 * * * *", {"mode": "outbox", "table": "outbox"})
    await db.execute(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node, error) "
        "VALUES ('y', 'failing', '2027-01-01T00:05:00Z', 'failed', 'n', '[/] [bold]x')"
    )
    result = run_cli(["jobs", "list", "--jobs-file", str(jobs_file)], cli_env)
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "30 2 * * *" in lines["from_file"] and "Europe/Berlin" in lines["from_file"]
    assert "T02:30:00+0" in lines["from_file"]  # next run, in the job's zone
    assert "succeeded 2027-01-01T00:05:00+00:00 (42 rows)" in lines["from_table"]
    assert "[/] [bold]x" in lines["failing"]

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


FLAG_SCAN: dict[str, object] = {"mode": "flag", "table": "customers"}


async def test_hostile_cron_jobs_rows_are_refused_and_never_stop_the_others(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_job(db, "every_second", "* * * * * *", FLAG_SCAN)
    hostile = [
        # config must not override the row's columns: disabled stays disabled.
        (
            "revived",
            "0 3 * * *",
            {"scan": FLAG_SCAN, "enabled": True, "schedule": "* * * * * *"},
            False,
            "0",
            "config: unknown key 'enabled'",
        ),
        ("february_30", "0 0 30 2 *", {"scan": FLAG_SCAN}, True, "0", "never fires"),
        (
            "eternal_jitter",
            "* * * * *",
            {"scan": FLAG_SCAN},
            True,
            "100000000 years",
            "jitter: Input should be less than or equal",
        ),
        (
            "config_jitter",
            "* * * * *",
            {"scan": FLAG_SCAN, "jitter": 1e300},
            True,
            "0",
            "config: unknown key 'jitter'",
        ),
        (
            "catalog_reader",
            "* * * * *",
            {"scan": FLAG_SCAN | {"table": "pg_catalog.pg_authid", "key_column": "rolname"}},
            True,
            "0",
            "scan.table: pg_catalog.pg_authid is in a system schema: scans read only user tables",
        ),
        (
            "jitter_past_the_tick",
            "* * * * * *",
            {"scan": FLAG_SCAN},
            True,
            "1 second",
            "jitter: 1 s is not less than the schedule's shortest interval (1 s)",
        ),
    ]
    for name, schedule, config, enabled, jitter, _ in hostile:
        await db.execute(
            "INSERT INTO cron_jobs (name, schedule, config, enabled, jitter) "
            "VALUES ($1, $2, $3, $4, $5::text::interval)",
            name,
            schedule,
            json.dumps(config),
            enabled,
            jitter,
        )
    # History past the retention (14 days by default): the leader prunes it.
    await db.execute(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node) "
        "SELECT 'old' || n, 'every_second', now() - interval '30 days' - n * interval '1 s', "
        "'succeeded', 'n' FROM generate_series(1, 3000) n"
    )
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:

        async def ticked() -> bool:
            recent: int = await db.fetchval(
                "SELECT count(*) FROM cron_runs WHERE job = 'every_second' "
                "AND status = 'succeeded' AND scheduled_for > now() - interval '1 day'"
            )
            return recent >= 3

        await wait_for(ticked, 30, "three ticks of the valid job")

        async def pruned() -> bool:
            old = await db.fetch(
                "SELECT id FROM cron_runs WHERE scheduled_for < now() - interval '14 days'"
            )
            # "old1" stays if it was the job's newest run when the leader pruned, that is
            # if the prune ran before the first tick was claimed (both start at once).
            return [r["id"] for r in old] in ([], ["old1"])

        await wait_for(pruned, 30, "the leader to prune runs older than the retention")
        logs = process.logs()
        for name, *_, reason in hostile:
            assert f"job '{name}' (cron_jobs): " in logs, name
            assert reason in logs, reason
        assert logs.count("leading as") == 1 and "leading failed" not in logs
        assert process.alive()
    finally:
        process.stop()
    ran = await db.fetchval(
        "SELECT count(*) FROM cron_runs WHERE job <> 'every_second' AND status <> 'failed'"
    )
    assert ran == 0
    result = run_cli(["jobs", "list"], cli_env)
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    # Its last run may be a tick skipped as "still running" on a busy machine.
    assert "invalid" not in lines["every_second"], lines["every_second"]
    for name, *_ in hostile:
        assert "invalid" in lines[name] and "not run:" in lines[name], lines[name]


async def test_a_job_whose_table_is_locked_fails_its_run_and_the_others_keep_ticking(
    db: asyncpg.Connection, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await db.execute(
        "CREATE TABLE orders (id integer PRIMARY KEY, needs_sync boolean NOT NULL DEFAULT true);"
        "INSERT INTO orders (id) VALUES (1); INSERT INTO customers (id, name) VALUES (1, 'a')"
    )
    # As many jobs on the locked table as the scheduler's pool has connections: waiting
    # without a lock timeout, they would hold all four and every other job would stop.
    blocked = {f"blocked{n}" for n in range(4)}
    for name in sorted(blocked):
        await add_job(db, name, "* * * * * *", {"mode": "flag", "table": "orders"})
    await add_job(db, "free", "* * * * * *", FLAG_SCAN)
    locker = await asyncpg.connect(database_url)
    lock = locker.transaction()
    await lock.start()
    await locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    env = env_for(cli_env) | {"CRONSTREAM_DB_LOCK_TIMEOUT": "1"}
    process = scheduler(env, tmp_path, "s")
    process.start()
    try:
        reason = (
            "waited past the lock timeout (CRONSTREAM_DB_LOCK_TIMEOUT) on table orders: "
            "another session holds a lock on it or on rows of it"
        )

        async def blocked_runs_failed() -> bool:
            failed = await db.fetch("SELECT job, error FROM cron_runs WHERE status = 'failed'")
            for run in failed:
                assert run["error"] == f"job '{run['job']}': {reason}", run
            return {run["job"] for run in failed} == blocked

        await wait_for(blocked_runs_failed, 60, "a failed run of each job on the locked table")

        async def free_ran() -> bool:
            succeeded = [r for r in await runs(db, "free") if r["status"] == "succeeded"]
            return len(succeeded) >= 3

        # Still under the lock: the other job's runs go on.
        await wait_for(free_ran, 60, "three runs of the job on another table")
        assert await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND granted "
            "AND mode = 'AccessExclusiveLock'"
        )
        await lock.rollback()

        async def blocked_ran_again() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM cron_runs WHERE status = 'succeeded' AND job = ANY($1)",
                    sorted(blocked),
                )
            )

        await wait_for(blocked_ran_again, 60, "a run on the table once it is unlocked")
        logs = process.logs()
        assert "Traceback" not in logs and "leading failed" not in logs
        assert process.alive()
    finally:
        process.stop()
        await locker.close()


async def test_a_lost_listen_connection_is_re_established_and_notify_runs_the_scan(
    db: asyncpg.Connection, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_fused_job(db)

    async def finished_runs(at_least: int) -> bool:
        done = [r for r in await runs(db, "fused") if r["status"] == "succeeded"]
        return len(done) >= at_least

    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:
        await wait_for_log(process, "listening on")
        await wait_for(lambda: finished_runs(1), 30, "the scan a new leader runs once")
        # Our role may only end its own backends: pick the listener by name and database.
        terminated = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database() "
            "AND usename = current_user",
            LISTEN_APPLICATION,
        )
        assert terminated == 1
        await wait_for_log(process, "listening again on", 30)
        # NOTIFYs sent while nobody listened are lost: it scans once more, at once.
        await wait_for(lambda: finished_runs(2), 30, "the scan after listening again")
        await clients.ensure_topics(settings, [settings.sync_topic])
        began = time.monotonic()
        await db.execute("UPDATE customers SET name = 'b', needs_sync = true WHERE id = 1")
        await db.execute("SELECT pg_notify('customers_changed', '1')")
        records = await read_all(settings, settings.sync_topic, expected=1, deadline_s=10)
        latency = time.monotonic() - began
        assert process.alive() and process.logs().count("leading as") == 1
    finally:
        process.stop()
    assert [decode(r.value).payload["name"] for r in records] == ["b"]
    assert latency < 5
    emitted = [r for r in await runs(db, "fused") if r["rows_emitted"]]
    assert len(emitted) == 1


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def test_run_history_queries_read_one_index_entry_per_job(db: asyncpg.Connection) -> None:
    """What the leader and `jobs list` ask of cron_runs does not grow with its history."""
    await db.execute(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node) "
        "SELECT j || n, j, '2027-01-01'::timestamptz + n * interval '1 s', 'succeeded', 'n' "
        "FROM unnest(ARRAY['a', 'b', 'c']) j, generate_series(1, 20000) n"
    )
    await db.execute("ANALYZE cron_runs")
    jobs = ["a", "b", "c", "never_ran"]
    # The leader's resume points and `jobs list` both read runs_latest.
    text = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query('runs_latest')}", jobs)
    nodes = list(plan_nodes(json.loads(text)[0]["Plan"]))
    scans = [n for n in nodes if n.get("Relation Name") == "cron_runs"]
    assert scans, nodes
    assert {n["Node Type"] for n in scans} <= {"Index Scan", "Index Only Scan"}
    # One probe per job, each returning at most one row (`never_ran` none).
    assert [(n["Actual Loops"], n["Actual Rows"] <= 1) for n in scans] == [(4, True)]
    rows = await db.fetch(query("runs_latest"), jobs)
    assert {r["job"]: r["scheduled_for"].isoformat() for r in rows} == {
        job: "2027-01-01T05:33:20+00:00" for job in ("a", "b", "c")
    }
    # Taking over and pruning read through indexes too, never the whole history.
    statements: list[tuple[str, list[object]]] = [
        ("runs_abandon", ["me"]),
        ("runs_prune", [datetime(2027, 1, 1, 3, tzinfo=UTC), 5000]),
    ]
    for name, args in statements:
        text = await db.fetchval(f"EXPLAIN (FORMAT JSON) {query(name)}", *args)
        scans = [n for n in plan_nodes(json.loads(text)[0]["Plan"]) if "Relation Name" in n]
        assert scans and "Seq Scan" not in {n["Node Type"] for n in scans}, (name, scans)


async def test_pruning_deletes_old_runs_in_bounded_batches_and_keeps_each_jobs_newest(
    db: asyncpg.Connection, database_url: str
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=30)
    await db.execute(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node) "
        "SELECT 'a' || n, 'a', $1::timestamptz - n * interval '1 s', 'succeeded', 'n' "
        "FROM generate_series(1, 2500) n",
        old,
    )
    await db.executemany(
        "INSERT INTO cron_runs (id, job, scheduled_for, status, node) VALUES ($1, $2, $3, $4, 'n')",
        [
            ("a-recent", "a", now, "succeeded"),
            ("gone-last", "gone", old, "succeeded"),  # a removed job's newest run: kept
            ("b-running", "b", old - timedelta(days=1), "running"),  # never under a run
            ("b-last", "b", old, "failed"),
        ],
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        prune = Runs(pool, "n").prune
        assert [await prune(now - timedelta(days=14), 1000) for _ in range(4)] == [
            1000,
            1000,
            500,
            0,
        ]
    finally:
        await pool.close()
    left = await db.fetch("SELECT id FROM cron_runs ORDER BY id")
    assert [r["id"] for r in left] == ["a-recent", "b-last", "b-running", "gone-last"]


async def test_a_run_records_its_rejected_rows_and_a_missing_table_is_one_line(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await db.execute(
        "CREATE TABLE notes (id text PRIMARY KEY, needs_sync boolean NOT NULL DEFAULT true);"
        "INSERT INTO notes (id) VALUES ('fine'), (repeat('k', 1001)), ('also fine')"
    )
    await add_job(db, "notes", "* * * * * *", {"mode": "flag", "table": "notes"})
    await add_job(db, "gone", "* * * * * *", {"mode": "flag", "table": "no_such_table"})
    process = scheduler(env_for(cli_env), tmp_path, "s")
    process.start()
    try:

        async def both_ran() -> bool:
            done = await db.fetch(
                "SELECT DISTINCT job FROM cron_runs WHERE status IN ('succeeded', 'failed')"
            )
            return {r["job"] for r in done} == {"notes", "gone"}

        await wait_for(both_ran, 30, "a run of each job")
        first = await db.fetchrow(
            "SELECT status, rows_emitted, rows_rejected FROM cron_runs WHERE job = 'notes' "
            "AND status = 'succeeded' ORDER BY scheduled_for LIMIT 1"
        )
        assert tuple(first) == ("succeeded", 2, 1)
        logs = process.logs()
        assert "table no_such_table does not exist" in logs
        assert "Traceback" not in logs
        assert process.alive()
    finally:
        process.stop()
    # Every run meets the bad row again (it stays pending); a tick skipped as "still
    # running" on a busy machine would hide that from `jobs list`, which shows the newest.
    await db.execute("DELETE FROM cron_runs WHERE job = 'notes' AND status <> 'succeeded'")
    result = run_cli(["jobs", "list"], cli_env)
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "1 rejected" in lines["notes"], lines["notes"]
    assert "no_such_table" in lines["gone"], lines["gone"]
