"""Replay positions are durable: a re-apply replay records how far it got in each
batch's transaction, so neither a batch retried after a lost COMMIT acknowledgement nor
a replay resumed after a stop or a kill applies a record twice; and a rebuild's dead
letters go to a topic of its own. Real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from cronstream import Event, Registry
from cronstream.config.settings import Settings
from cronstream.kafka import clients
from cronstream.streams import replay
from cronstream.streams.replay import schema_for
from tests.integration.commands import run_cli
from tests.integration.commit_cutter import CommitCutter
from tests.integration.handlers_under_test import count
from tests.integration.kafka_helpers import end_offsets, read_all, wait_for
from tests.integration.replay_handlers import GATE, MODULE
from tests.integration.workers import (
    HANDLERS,
    WorkerProcess,
    applied_counts,
    checkpoints_at_end,
    count_events,
    create_counts_table,
    publish,
    worker_env,
)


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return worker_env(cli_env)


async def apply_live(settings: Settings, env: dict[str, str], log_dir: Path) -> None:
    """A live worker applies everything published so far, once, then stops."""
    worker = WorkerProcess(env, log_dir, "live")
    worker.start()
    try:

        async def applied() -> bool:
            assert worker.alive(), worker.logs()[-3000:]
            return await checkpoints_at_end(settings, settings.sync_topic)

        await wait_for(applied, 90, "the live worker to apply everything")
    finally:
        worker.stop()


async def positions(database_url: str, replay_id: int) -> dict[int, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            'SELECT partition, "offset" FROM replay_positions WHERE replay_id = $1', replay_id
        )
    finally:
        await connection.close()
    return {row["partition"]: row["offset"] for row in rows}


async def test_a_batch_whose_commit_acknowledgement_is_lost_applies_nothing_a_third_time(
    settings: Settings, env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    ids = await publish(settings, list(count_events(40)))
    await apply_live(settings, env, tmp_path)
    async with CommitCutter(settings.database_dsn) as cutter:
        first_batch: list[str] = []  # the events of the transaction whose answer is lost

        async def arms_then_counts(events: Sequence[Event], connection: asyncpg.Connection) -> None:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            if not cutter.armed and not cutter.cut:
                cutter.armed.add(pid)
            if pid in cutter.armed:
                first_batch.extend(event.id for event in events)
            await count(events, connection)

        registry = Registry()
        registry.register("count", arms_then_counts)
        proxied = Settings(
            kafka_bootstrap=settings.kafka_bootstrap,
            database_url=cutter.url,
            sync_topic=settings.sync_topic,
            consumer_group=settings.consumer_group,
            batch_size=10,
            retry_backoff=0.05,
        )
        asked = replay.Asked(settings.sync_topic, from_beginning=True)
        plan = await replay.plan_replay(proxied, replay.check(asked, settings.consumer_group))
        stopping = asyncio.Event()
        done = await replay.Replay(proxied, registry, plan, ["count"], stopping).run()

    assert done.status == "succeeded", done.error
    assert len(cutter.cut) == 1 and first_batch, "one COMMIT was answered and the answer lost"
    # Live once, the replay once; the retried batch found its records re-applied already.
    assert await applied_counts(database_url) == dict.fromkeys(ids, 2)
    assert (done.records, done.duplicates) == (40, len(first_batch))
    assert done.applied == 40 - len(first_batch)
    ends = await end_offsets(settings, settings.sync_topic)
    assert done.replay_id is not None
    assert await positions(database_url, done.replay_id) == {
        p: end - 1 for p, end in ends.items() if end
    }


def gated_events(n: int, gate_at: int) -> list[Event]:
    """Count events of one key (one partition, offsets in this order); the one at
    `gate_at` waits at the gate (tests/integration/replay_handlers.py)."""
    run = uuid.uuid4().hex[:8]
    return [
        Event.new(
            type="count",
            source="t",
            entity="item",
            key=1,
            payload={"gate": i == gate_at},
            id=f"{run}-{i}",
        )
        for i in range(n)
    ]


async def stop_at_the_gate(process: WorkerProcess, database_url: str, stop: signal.Signals) -> int:
    """Start the replay `process`, and stop it while a batch of it waits at the gate:
    SIGKILL (its backend, still waiting, is ended too: the batch rolls back), or SIGTERM
    and then open the gate (the batch commits and the replay stops after it). Its id."""
    gate = await asyncpg.connect(database_url)
    try:
        await gate.execute("SELECT pg_advisory_lock($1)", GATE)
        process.start()
        waiting_at_gate = (
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1"
        )

        async def at_the_gate() -> bool:
            assert process.alive(), process.logs()[-3000:]
            return await gate.fetchval(waiting_at_gate, GATE) is not None

        await wait_for(at_the_gate, 90, "a replay batch waiting at the gate")
        waiting = await gate.fetchval(waiting_at_gate, GATE)
        replay_id: int = await gate.fetchval("SELECT id FROM replays")
        if stop == signal.SIGKILL:
            process.kill()
            await gate.execute("SELECT pg_terminate_backend($1)", waiting)

            async def gone() -> bool:
                return not await gate.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", waiting
                )

            await wait_for(gone, 30, "the killed replay's backend to end")
            await gate.execute("SELECT pg_advisory_unlock($1)", GATE)
        else:
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)
            await wait_for(
                lambda: "SIGTERM received" in process.logs(), 30, "the replay to take the signal"
            )
            await gate.execute("SELECT pg_advisory_unlock($1)", GATE)  # the batch goes on
            assert process.process.wait(timeout=60) == 1, process.logs()[-3000:]
            assert f"resume with: cronstream replay --resume {replay_id}" in process.logs()
        return replay_id
    finally:
        process.stop()
        await gate.close()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
async def test_a_replay_stopped_mid_batch_and_resumed_applies_each_record_once(
    settings: Settings,
    env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    """Stopped while a batch waits at the gate (record 25 of 60, batches of at most 10):
    killed, that batch rolls back; terminated, it commits and the replay stops after it.
    `--resume` goes on after the recorded position."""
    await create_counts_table(database_url)
    ids = await publish(settings, gated_events(60, gate_at=25))
    await apply_live(settings, env, tmp_path)
    replay_env = env | {"CRONSTREAM_BATCH_SIZE": "10", "CRONSTREAM_DB_LOCK_TIMEOUT": "120"}
    args = ["replay", "--topic", settings.sync_topic, "--from-beginning", "--handlers", MODULE]
    process = WorkerProcess(replay_env, tmp_path, "replay", args)
    replay_id = await stop_at_the_gate(process, database_url, stop)

    [(partition, reached)] = (await positions(database_url, replay_id)).items()
    if stop == signal.SIGKILL:
        assert 15 <= reached < 25, "the batches before the gate's committed, its own did not"
    else:
        assert 25 <= reached < 59, "the gate's batch committed, and the replay stopped after it"
    counts = await applied_counts(database_url)
    assert {i for i, n in counts.items() if n == 2} == set(ids[: reached + 1])

    resumed = run_cli(["replay", "--resume", str(replay_id)], replay_env, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    left = 59 - reached
    assert f"resuming replay {replay_id}, re-apply of {settings.sync_topic}" in resumed.stderr
    assert f"{left} records read, {left} applied, 0 duplicates" in resumed.stdout
    assert await applied_counts(database_url) == dict.fromkeys(ids, 2)
    assert await positions(database_url, replay_id) == {partition: 59}
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow("SELECT * FROM replays WHERE id = $1", replay_id)
    finally:
        await connection.close()
    assert (row["status"], row["records"], row["applied"]) == ("succeeded", 60, 60)
    assert row["resumed_at"] is not None

    again = run_cli(["replay", "--resume", str(replay_id)], replay_env)
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stderr == f"error: --resume {replay_id}: it succeeded, nothing is left to replay\n"


async def test_a_rebuild_dead_letters_to_its_own_topic_and_the_live_one_is_untouched(
    settings: Settings, env: dict[str, str], database_url: str
) -> None:
    ids = await publish(settings, list(count_events(5, event_type="always_fails")))
    live_dlq = settings.dlq_topic(settings.sync_topic)
    await clients.ensure_topics(settings, [live_dlq])
    own = f"{settings.sync_topic}.rebuild.{schema_for('rb.dlq')}.dlq"
    args = ["replay", "--topic", settings.sync_topic, "--from-beginning", "--consumer", "rb.dlq"]
    result = run_cli(
        [*args, "--handlers", HANDLERS], env | {"CRONSTREAM_HANDLER_ATTEMPTS": "1"}, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 records read, 0 applied, 0 duplicates, 5 dead-lettered" in result.stdout

    letters = await read_all(settings, own, 5)
    assert sorted(json.loads(letter.value or b"")["id"] for letter in letters) == sorted(ids)
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq.consumer"] == b"rb.dlq"
        assert headers["dlq.original.topic"] == settings.sync_topic.encode()
        assert b"refusing 1 event(s)" in headers["dlq.error"]
    assert sum((await end_offsets(settings, live_dlq)).values()) == 0
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT consumer, dlq_topic, count(*) AS n FROM dead_letters GROUP BY 1, 2"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [("rb.dlq", own, 5)]


async def test_a_killed_rebuild_resumed_applies_each_record_once_into_its_schema(
    settings: Settings, env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    ids = await publish(settings, gated_events(40, gate_at=25))
    replay_env = env | {"CRONSTREAM_BATCH_SIZE": "10", "CRONSTREAM_DB_LOCK_TIMEOUT": "120"}
    args = ["replay", "--topic", settings.sync_topic, "--from-beginning", "--handlers", MODULE]
    args += ["--consumer", "rb.kill", "--like", "event_counts"]
    process = WorkerProcess(replay_env, tmp_path, "rebuild", args)
    replay_id = await stop_at_the_gate(process, database_url, signal.SIGKILL)
    [(partition, reached)] = (await positions(database_url, replay_id)).items()
    assert 15 <= reached < 25

    resumed = run_cli(["replay", "--resume", str(replay_id)], replay_env, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    schema = schema_for("rb.kill")
    assert (
        f"resuming replay {replay_id}, rebuild of {settings.sync_topic} for consumer rb.kill "
        f"into schema {schema}: {39 - reached} records"
    ) in resumed.stderr
    connection = await asyncpg.connect(database_url)
    try:
        rebuilt = await connection.fetch(f"SELECT event_id, applied FROM {schema}.event_counts")
        live = await connection.fetchval("SELECT count(*) FROM event_counts")
    finally:
        await connection.close()
    assert {row["event_id"]: row["applied"] for row in rebuilt} == dict.fromkeys(ids, 1)
    assert live == 0
    assert await positions(database_url, replay_id) == {partition: 39}
