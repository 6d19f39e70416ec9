"""`cronstream status` against the real checkpoints, log ends, dead letters and jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from tests.integration.commands import run_cli
from tests.integration.http_helpers import free_port
from tests.integration.kafka_helpers import end_offsets, wait_for
from tests.integration.workers import (
    WorkerProcess,
    checkpoints,
    checkpoints_at_end,
    commit_offsets,
    count_events,
    create_counts_table,
    publish,
    worker_env,
)

STALE_OFFSET = 10_000_000


async def send_raw(settings: Settings, value: bytes) -> None:
    """A value no worker can decode: it is dead-lettered."""
    producer: AIOKafkaProducer = clients.producer(settings)
    try:
        await producer.start()  # inside: a cancelled start must still stop it
        await (await producer.send(settings.sync_topic, value=value, key=b"bad:1"))
    finally:
        await producer.stop()


def status_json(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    result = run_cli(["status", "--json"], env, timeout=60)
    return result.returncode, json.loads(result.stdout), result.stderr


async def test_status_shows_checkpoints_log_ends_lag_dead_letters_and_jobs(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    await publish(settings, list(count_events(60)))
    await send_raw(settings, b"not json")
    worker = WorkerProcess(worker_env(cli_env), tmp_path, "worker")
    worker.start()
    try:

        async def applied() -> bool:
            assert worker.alive(), worker.logs()[-3000:]
            return await checkpoints_at_end(settings, settings.sync_topic)

        await wait_for(applied, 90, "the worker to apply everything")
    finally:
        worker.stop()
    await publish(settings, list(count_events(7)))  # not applied: the lag
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            'INSERT INTO checkpoints (consumer, topic, partition, "offset") VALUES '
            "('replay.rebuild', $1, 0, -1), ('stale', $1, 0, $2)",
            settings.sync_topic,
            STALE_OFFSET,
        )
        await connection.execute(
            "INSERT INTO cron_jobs (name, schedule, config) VALUES "
            '(\'good\', \'*/5 * * * *\', \'{"scan": {"mode": "flag", "table": "t"}}\'), '
            '(\'broken\', \'not a schedule\', \'{"scan": {"mode": "flag", "table": "t"}}\')'
        )
    finally:
        await connection.close()

    code, status, stderr = status_json(cli_env)
    assert code == 0, stderr
    assert status["unreachable"] == {}

    ends = await end_offsets(settings, settings.sync_topic)
    done = await checkpoints(settings, settings.sync_topic)
    group = [p for p in status["partitions"] if p["consumer"] == settings.consumer_group]
    assert sorted(p["partition"] for p in group) == sorted(ends)  # every partition shown
    for p in group:
        assert p["log_end"] == ends[p["partition"]]
        assert p["checkpoint"] == done.get(p["partition"])  # None: no row yet
        following = 0 if p["checkpoint"] is None else p["checkpoint"] + 1
        assert p["lag"] == p["log_end"] - following
        assert p["problem"] is None
    assert sum(p["lag"] for p in group) == 7

    others = {
        p["consumer"]: p for p in status["partitions"] if p["consumer"] != settings.consumer_group
    }
    assert others["replay.rebuild"]["lag"] == ends[0]
    stale = others["stale"]
    assert stale["lag"] is None
    assert "beyond the log end" in stale["problem"]

    counts = {c["topic"]: c for c in status["dead_letter_counts"]}
    assert counts[settings.sync_topic]["total"] == 1
    assert counts[settings.sync_topic]["last_hour"] == 1
    assert status["dead_letters"][0]["topic"] == settings.sync_topic

    jobs = {j["name"]: j for j in status["jobs"]}
    assert jobs["good"]["next_run"] is not None and jobs["good"]["problem"] is None
    assert jobs["broken"]["next_run"] is None
    assert "schedule" in jobs["broken"]["problem"]
    assert status["leader"] is None

    summary = status["summary"]
    assert summary["ready"] is None and summary["applied_per_s"] is None  # no worker here
    assert summary["group_lag"] == 7
    assert (summary["unresolved_last_hour"], summary["unresolved_total"]) == (1, 1)
    assert summary["jobs_set_aside"] == ["broken"] and summary["jobs_failing"] == []
    assert {g["consumer"]: g["problems"] for g in status["groups"]} == {
        "replay.rebuild": 0,
        "stale": 1,
    }
    assert [count for _, count in status["dead_letters_per_minute"]] == [1]
    assert status["history"] == {}  # only a serving process samples

    tables = run_cli(["status"], cli_env, timeout=60)
    assert tables.returncode == 0, tables.stderr
    assert settings.sync_topic in tables.stdout and "beyond the log end" in tables.stdout
    first = tables.stdout.splitlines()[0]
    assert first.startswith("readiness: ask /readyz | applied -/s (last minute) | lag 7 |")
    assert "unresolved dead letters 1 last hour, 1 total" in first and "set aside: broken" in first


async def test_status_names_the_leading_scheduler(cli_env: dict[str, str], tmp_path: Path) -> None:
    scheduler = WorkerProcess(worker_env(cli_env), tmp_path, "scheduler", args=["scheduler"])
    scheduler.start()
    try:
        await wait_for(lambda: "leading as" in scheduler.logs(), 60, "the scheduler to lead")
        match = re.search(r"leading as (\S+?)\"", scheduler.logs())
        assert match is not None, scheduler.logs()[-2000:]
        code, status, stderr = status_json(cli_env)
        assert code == 0, stderr
        assert status["leader"] == match.group(1)
    finally:
        scheduler.stop()


async def test_status_exits_1_in_one_line_when_postgres_is_unreachable(
    cli_env: dict[str, str], settings: Settings
) -> None:
    await clients.ensure_topics(settings, [settings.sync_topic])
    env = cli_env | {
        "CRONSTREAM_DATABASE_URL": f"postgresql://cronstream:hunter2@127.0.0.1:{free_port()}/x"
    }
    result = run_cli(["status", "--json"], env, timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: unreachable: postgres"), errors
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    status = json.loads(result.stdout)  # what Kafka said is still shown
    assert list(status["unreachable"]) == ["postgres"]
    assert {p["topic"] for p in status["partitions"]} == {settings.sync_topic}


async def test_a_partition_without_checkpoint_lags_from_kafkas_committed_offset(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    """Where a worker would start it: Kafka's committed offset, else the log start."""
    await publish(settings, list(count_events(60)))
    ends = await end_offsets(settings, settings.sync_topic)
    chosen = next(p for p, end in ends.items() if end >= 2)
    await commit_offsets(settings, settings.sync_topic, {chosen: ends[chosen] - 1})
    code, status, stderr = status_json(cli_env)
    assert code == 0, stderr
    own = {p["partition"]: p for p in status["partitions"]}
    assert all(p["checkpoint"] is None for p in own.values())
    assert own[chosen]["lag"] == 1 and own[chosen]["committed"] == ends[chosen] - 1
    assert all(own[p]["lag"] == end for p, end in ends.items() if p != chosen)
    assert status["summary"]["group_lag"] == sum(ends.values()) - ends[chosen] + 1
    tables = run_cli(["status"], cli_env, timeout=60)
    assert "no checkpoint (lag from Kafka's committed offset)" in tables.stdout
