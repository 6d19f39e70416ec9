"""`cronstream replay` against real Kafka and Postgres: plans, rebuilds, re-applies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka.structs import RecordMetadata

from cronstream.cli.compose import build_registry
from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.handlers.applier import BatchApplier
from cronstream.handlers.failures import is_outage
from cronstream.kafka import clients
from cronstream.runtime.retry import RetryPolicy
from cronstream.streams import replay as replay_module
from cronstream.streams.replay import schema_for
from tests.integration.applier_helpers import TOPIC, Sink, records, route
from tests.integration.commands import run_cli
from tests.integration.handlers_under_test import COUNTS_TABLE
from tests.integration.kafka_helpers import read_all, wait_for
from tests.integration.workers import (
    HANDLERS,
    WorkerProcess,
    applied_counts,
    checkpoints,
    checkpoints_at_end,
    count_events,
    create_counts_table,
    publish,
    publish_until,
    worker_env,
)

BASE = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return worker_env(cli_env)


@pytest.fixture
def live(env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Live workers (started by the test), stopped at the end."""
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        process.stop()


def start_workers(live: list[WorkerProcess], env: dict[str, str], tmp_path: Path, n: int) -> None:
    for i in range(n):
        process = WorkerProcess(env, tmp_path, f"live{i}")
        process.start()
        live.append(process)


async def wait_until_applied(settings: Settings, live: list[WorkerProcess]) -> None:
    async def done() -> bool:
        for process in live:
            assert process.alive(), f"worker exited:\n{process.logs()[-3000:]}"
        return await checkpoints_at_end(settings, settings.sync_topic)

    await wait_for(done, 90, "the live workers to apply everything")


async def publish_at(settings: Settings, events: list[Event], at: datetime) -> list[RecordMetadata]:
    """Send events stamped with Kafka timestamp `at`; their partitions and offsets."""
    await clients.ensure_topics(settings, [settings.sync_topic])
    producer = clients.producer(settings)
    try:
        await producer.start()  # inside: a cancelled start must still stop it
        futures = [
            await producer.send(
                settings.sync_topic,
                value=e.encode(),
                key=e.kafka_key,
                timestamp_ms=int(at.timestamp() * 1000),
            )
            for e in events
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def fetch(database_url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def ids_by_position(settings: Settings, total: int) -> dict[tuple[int, int], str]:
    """(partition, offset) -> event id of every record of the topic."""
    records = await read_all(settings, settings.sync_topic, total)
    return {(r.partition, r.offset): json.loads(r.value or b"{}")["id"] for r in records}


def replay(env: dict[str, str], *args: str) -> str:
    result = run_cli(["replay", "--topic", env["CRONSTREAM_SYNC_TOPIC"], *args], env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def plan_lines(stdout: str) -> dict[int, str]:
    lines = [line for line in stdout.splitlines() if line.startswith("partition ")]
    return {int(line.split()[1].rstrip(":")): line for line in lines}


async def test_dry_run_plans_offset_and_time_ranges_and_writes_nothing(
    settings: Settings, env: dict[str, str], database_url: str
) -> None:
    early = await publish_at(settings, list(count_events(30)), BASE)
    late = await publish_at(settings, list(count_events(30)), BASE + timedelta(minutes=2))
    partition = max(
        {m.partition for m in early}, key=lambda p: sum(m.partition == p for m in early)
    )
    in_early = sorted(m.offset for m in early if m.partition == partition)
    assert len(in_early) >= 3

    by_offset = plan_lines(
        replay(
            env,
            "--dry-run",
            "--partitions",
            str(partition),
            "--from-offset",
            "1",
            "--to-offset",
            "2",
        )
    )
    assert by_offset == {
        partition: f"partition {partition}: offsets 1..2, 2 records; re-applies 0 at or below "
        "checkpoint -1, applies 2 above it (checkpoint -1 -> 2)"
    }

    middle = (BASE + timedelta(minutes=1)).isoformat()
    after = plan_lines(replay(env, "--dry-run", "--from-time", middle))
    before = plan_lines(replay(env, "--dry-run", "--from-beginning", "--to-time", middle))
    rebuild_plan = replay(env, "--dry-run", "--from-time", middle, "--consumer", "rebuild.plan")
    assert f"for consumer rebuild.plan into schema {schema_for('rebuild.plan')}: " in rebuild_plan
    rebuild = plan_lines(rebuild_plan)
    for p in range(settings.topic_partitions):
        firsts = [m.offset for m in early if m.partition == p]
        seconds = [m.offset for m in late if m.partition == p]
        if seconds:
            span = f"offsets {min(seconds)}..{max(seconds)}, {len(seconds)} records"
            assert after[p].startswith(f"partition {p}: {span}; "), after[p]
            assert rebuild[p] == (
                f"partition {p}: {span}; consumer rebuild.plan checkpoint -1 -> {max(seconds)}"
            )
        else:
            assert after[p].startswith(f"partition {p}: offsets none, 0 records"), after[p]
        if firsts:
            span = f"offsets 0..{max(firsts)}, {len(firsts)} records"
            assert before[p].startswith(f"partition {p}: {span}; "), before[p]

    written = await fetch(
        database_url,
        "SELECT (SELECT count(*) FROM replays) AS replays, "
        "(SELECT count(*) FROM checkpoints) AS checkpoints, "
        "(SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_plan%') AS schemas",
    )
    assert dict(written[0]) == {"replays": 0, "checkpoints": 0, "schemas": 0}


# A rebuild whose schema holds live tables would write into them: refused, one line.
INTO_LIVE_TABLES = [
    (["--consumer", "rb", "--schema", "public"], "is on the live search_path"),
    (["--consumer", "rb", "--schema", "rb", "--like", "rb.t"], "is in --schema rb itself"),
    (["--consumer", "rb", "--like", "no_such_table"], "no such table"),
]


@pytest.mark.parametrize(("options", "says"), INTO_LIVE_TABLES)
async def test_a_rebuild_into_live_tables_is_refused(
    settings: Settings, env: dict[str, str], database_url: str, options: list[str], says: str
) -> None:
    await publish_at(settings, list(count_events(3)), BASE)
    await fetch(database_url, "CREATE SCHEMA rb")
    await fetch(database_url, "CREATE TABLE rb.t (id int)")
    result = run_cli(
        ["replay", "--topic", env["CRONSTREAM_SYNC_TOPIC"], "--from-beginning", *options], env
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert await fetch(database_url, "SELECT * FROM replays") == []


async def test_an_unmigrated_database_is_one_line_naming_migrate(
    settings: Settings, env: dict[str, str], database_url: str
) -> None:
    await publish_at(settings, list(count_events(3)), BASE)
    await fetch(database_url, "DROP TABLE replays CASCADE")
    result = run_cli(["replay", "--topic", env["CRONSTREAM_SYNC_TOPIC"], "--from-beginning"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("run 'cronstream migrate'"), result.stderr


async def test_rebuild_from_offset_zero_gives_the_live_projection(
    settings: Settings,
    env: dict[str, str],
    database_url: str,
    live: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    start_workers(live, env, tmp_path, 1)
    events = [
        Event.new(
            type="sync_required",
            source="t",
            entity=entity,
            key=k,
            version=v,
            payload={"k": k, "v": v, "entity": entity},
        )
        for entity in ("customer", "order")
        for v in (2, 1, 3)  # an older version arriving late must not win, in either run
        for k in range(150)
    ]
    await publish(settings, events)
    await wait_until_applied(settings, live)

    summary = replay(env, "--from-beginning", "--consumer", "rebuild1")
    schema = schema_for("rebuild1")
    assert f"{len(events)} records read, {len(events)} applied, 0 duplicates" in summary

    columns = "entity, key, version, occurred_at, payload, event_id, source"
    rows = await fetch(database_url, f"SELECT {columns} FROM entity_projection ORDER BY 1, 2")
    rebuilt = await fetch(
        database_url, f"SELECT {columns} FROM {schema}.entity_projection ORDER BY 1, 2"
    )
    assert len(rows) == 300
    assert [tuple(r) for r in rebuilt] == [tuple(r) for r in rows]
    # Run again: it resumes from its own checkpoints and finds nothing left to do.
    again = replay(env, "--from-beginning", "--consumer", "rebuild1")
    assert f"{len(events)} records read, 0 applied, {len(events)} duplicates" in again


async def test_reapply_of_a_subrange_applies_exactly_that_range_again(
    settings: Settings,
    env: dict[str, str],
    database_url: str,
    live: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await create_counts_table(database_url)
    start_workers(live, env, tmp_path, 1)
    ids = await publish(settings, list(count_events(300)))
    await wait_until_applied(settings, live)
    before = await checkpoints(settings, settings.sync_topic)

    positions = await ids_by_position(settings, len(ids))
    out = replay(
        env, "--handlers", HANDLERS, "--partitions", "0", "--from-offset", "3", "--to-offset", "9"
    )
    assert "7 records read, 7 applied, 0 duplicates, 0 dead-lettered" in out

    again = {positions[(0, offset)] for offset in range(3, 10)}
    counts = await applied_counts(database_url)
    assert {i for i, n in counts.items() if n == 2} == again
    assert {i for i, n in counts.items() if n == 1} == set(ids) - again
    assert await checkpoints(settings, settings.sync_topic) == before, "never lowered"
    [row] = await fetch(database_url, "SELECT * FROM replays")
    assert (row["status"], row["mode"], row["consumer"], row["schema"]) == (
        "succeeded",
        "re-apply",
        settings.consumer_group,
        None,
    )
    assert (row["records"], row["applied"], row["duplicates"], row["dead_lettered"]) == (7, 7, 0, 0)
    assert row["partitions"] == [0] and row["finished_at"] is not None
    assert json.loads(row["range"])["resolved"]["0"]["from"] == 3


async def test_replays_beside_live_workers_double_nothing_but_the_range(
    settings: Settings,
    env: dict[str, str],
    database_url: str,
    live: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await create_counts_table(database_url)
    start_workers(live, env, tmp_path, 2)
    flowing = asyncio.Event()
    producer = asyncio.create_task(publish_until(settings, flowing, chunk=60, pause=0.05))

    async def applied_through_49() -> bool:
        assert not producer.done(), producer
        return (await checkpoints(settings, settings.sync_topic)).get(0, -1) >= 49

    await wait_for(applied_through_49, 90, "partition 0 applied through offset 49")
    args = ["--handlers", HANDLERS]
    _, reapplied = await asyncio.gather(
        asyncio.to_thread(
            replay, env, *args, "--from-beginning", "--consumer", "rb", "--like", "event_counts"
        ),
        asyncio.to_thread(
            replay, env, *args, "--partitions", "0", "--from-offset", "0", "--to-offset", "49"
        ),
    )
    flowing.set()
    ids = await producer
    await wait_until_applied(settings, live)
    assert "50 records read, 50 applied" in reapplied

    positions = await ids_by_position(settings, len(ids))
    again = {positions[(0, offset)] for offset in range(50)}
    counts = await applied_counts(database_url)
    assert set(counts) == set(ids)
    assert {i for i, n in counts.items() if n != 1} == again
    assert all(counts[i] == 2 for i in again)

    rows = await fetch(database_url, "SELECT * FROM replays WHERE mode = 'rebuild'")
    assert rows[0]["status"] == "succeeded", rows[0]["error"]
    rebuild_counts = {
        r["event_id"]: r["applied"]
        for r in await fetch(
            database_url, f"SELECT event_id, applied FROM {schema_for('rb')}.event_counts"
        )
    }
    assert len(rebuild_counts) == rows[0]["records"] == rows[0]["applied"] > 0
    assert set(rebuild_counts.values()) == {1}


async def test_interrupted_rebuild_says_where_it_stopped_and_resumes(
    settings: Settings, env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    ids = await publish(settings, list(count_events(300)))
    args = ["replay", "--topic", settings.sync_topic, "--handlers", HANDLERS]
    args += ["--from-beginning", "--consumer", "slow", "--like", "event_counts"]
    process = WorkerProcess(env, tmp_path, "replay", [*args, "--rate-limit", "40"])
    process.start()
    try:

        async def some_applied() -> bool:
            assert process.alive(), process.logs()[-3000:]
            rows = await fetch(database_url, "SELECT applied FROM replays")
            return bool(rows) and rows[0]["applied"] > 0

        await wait_for(some_applied, 60, "the replay to apply a batch")
        code, _ = process.terminate()
    finally:
        process.stop()
    output = process.logs()
    assert code == 1, output[-3000:]
    assert "resume with: cronstream replay" in output
    [row] = await fetch(database_url, "SELECT * FROM replays")
    assert row["status"] == "interrupted"
    stopped = json.loads(row["range"])["stopped"]
    assert sum(offset + 1 for offset in stopped.values()) == row["records"] < len(ids)

    done = run_cli(args, env, timeout=180)
    assert done.returncode == 0, done.stderr
    counts = await fetch(
        database_url, f"SELECT event_id, applied FROM {schema_for('slow')}.event_counts"
    )
    assert {r["event_id"] for r in counts} == set(ids)
    assert {r["applied"] for r in counts} == {1}


async def test_a_schema_another_consumers_running_rebuild_writes_into_is_refused(
    settings: Settings, env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """Two consumers' rebuilds into one schema would mix their effects: while one runs,
    the other is refused in one line naming it, both when it plans and when it starts
    (a plan made before the first began). A replay whose process died leaves its row
    'running' but holds nothing: the schema is free again."""
    await create_counts_table(database_url)
    await publish(settings, list(count_events(300)))
    args = ["replay", "--topic", settings.sync_topic, "--handlers", HANDLERS, "--from-beginning"]
    args += ["--schema", "shared", "--like", "event_counts"]
    second = ["--consumer", "orders.v2"]
    asked = replay_module.Asked(
        settings.sync_topic, from_beginning=True, consumer="orders.v2", schema="shared"
    )
    early = await replay_module.plan_replay(
        settings,
        replay_module.check(replace(asked, like=("event_counts",)), settings.consumer_group),
    )
    first = WorkerProcess(
        env, tmp_path, "first", [*args, "--consumer", "orders-v2", "--rate-limit", "20"]
    )
    first.start()
    try:

        async def first_applies() -> bool:
            assert first.alive(), first.logs()[-3000:]
            rows = await fetch(database_url, "SELECT applied FROM replays")
            return bool(rows) and rows[0]["applied"] > 0

        await wait_for(first_applies, 60, "the first rebuild to apply a batch")
        [row] = await fetch(database_url, "SELECT id, started_at FROM replays")
        started = row["started_at"].astimezone(UTC).isoformat(timespec="seconds")
        refused = run_cli([*args, *second], env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        [line] = refused.stderr.splitlines()
        assert line.startswith(
            f"error: --schema shared is in use by replay {row['id']} of consumer 'orders-v2' "
            f"(started {started} by "
        ), line
        assert line.endswith(
            "still running: wait for it to end or stop it, or give another --schema"
        )

        replaying = replay_module.Replay(
            settings, build_registry([HANDLERS]), early, [HANDLERS], asyncio.Event()
        )
        with pytest.raises(replay_module.ReplayError, match=f"in use by replay {row['id']} "):
            await replaying.run()
        assert first.alive(), "the first rebuild went on"
        assert len(await fetch(database_url, "SELECT id FROM replays")) == 1
        first.kill()
    finally:
        first.stop()
    [dead] = await fetch(database_url, "SELECT status FROM replays")
    assert dead["status"] == "running"
    done = run_cli([*args, *second], env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 records read" in done.stdout


async def test_a_rebuild_goes_on_only_in_the_schema_its_checkpoints_belong_to(
    settings: Settings, env: dict[str, str], database_url: str
) -> None:
    """Rebuilds once went into a schema named like the consumer (`legacy`); the default
    now has a hash, and resuming there would skip what the checkpoints say went into
    `legacy`: refused, naming the schema to give."""
    await create_counts_table(database_url)
    await publish(settings, list(count_events(5)))
    args = ["--handlers", HANDLERS, "--from-beginning", "--consumer", "legacy"]
    args += ["--like", "event_counts"]
    replay(env, *args, "--schema", "legacy")
    [row] = await fetch(database_url, "SELECT id, started_at FROM replays")
    started = row["started_at"].astimezone(UTC).isoformat(timespec="seconds")
    result = run_cli(["replay", "--topic", settings.sync_topic, *args], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"error: --consumer 'legacy' has checkpoints from its rebuild into schema legacy "
        f"(replay {row['id']}, started {started}): give --schema legacy to go on there, "
        "or another --consumer to rebuild from the start"
    ]
    again = replay(env, *args, "--schema", "legacy")
    assert "5 records read, 0 applied, 5 duplicates" in again


async def test_reapplying_narrowed_batch_after_an_outage_applies_each_record_once_more(
    database_url: str,
) -> None:
    """A retried re-apply batch whose first halves had committed re-applies only the rest."""
    connection = await asyncpg.connect(database_url)
    await connection.execute(COUNTS_TABLE)
    sink = Sink()
    batch = records(["count"] * 7 + ["explodes"] + ["count"] * 8)
    policy = RetryPolicy(2, 0.01, 0.01)
    try:
        await BatchApplier("c", route, sink, lambda t: f"{t}.dlq", policy).apply(connection, batch)
        replay_id = await connection.fetchval(
            "INSERT INTO replays (started_by, mode, consumer, topic, partitions, range, handlers) "
            "VALUES ('t', 're-apply', 'c', $1, '{0,1}', '{}', '{}') RETURNING id",
            TOPIC,
        )
        reapply = BatchApplier(
            "c",
            route,
            sink,
            lambda t: f"{t}.dlq",
            policy,
            reapply_through={(TOPIC, 0): 7, (TOPIC, 1): 7},
            replay_id=replay_id,
        )
        sink.after_send.append(connection)  # Postgres goes away once the halves committed
        with pytest.raises(Exception) as raised:
            await reapply.apply(connection, batch)
        assert is_outage(raised.value), raised.value  # BatchLoop retries the batch
        await connection.close()
        connection = await asyncpg.connect(database_url)
        outcome = await reapply.apply(connection, batch)
        counts = await connection.fetch("SELECT applied FROM event_counts")
        checkpoint = await connection.fetch('SELECT "offset" FROM checkpoints')
    finally:
        await connection.close()
    assert sorted(r["applied"] for r in counts) == [2] * 15
    assert {r["offset"] for r in checkpoint} == {7}
    assert outcome.applied + outcome.duplicates + len(outcome.dead_letters) == len(batch)
