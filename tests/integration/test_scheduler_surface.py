"""The scheduler can be watched: its own /healthz, /readyz and /metrics, a `run` that
exits when its scheduler fails, and Kafka outages told in two lines by the scheduler and
the faust engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cronstream.config.settings import Settings
from tests.integration.http_helpers import (
    free_port,
    get,
    port_in_use_line,
    readyz,
    wait_ready,
)
from tests.integration.kafka_helpers import wait_for
from tests.integration.private_kafka import private_broker
from tests.integration.schedulers_helpers import add_job, scheduler
from tests.integration.workers import WorkerProcess, worker_env

CUSTOMERS = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    needs_sync boolean NOT NULL DEFAULT true
);
"""
SCAN: dict[str, object] = {"mode": "flag", "table": "customers", "entity": "customer"}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute(CUSTOMERS)
    await add_job(connection, "every_second", "* * * * * *", SCAN)
    yield connection
    await connection.close()


def scheduler_env(cli_env: dict[str, str], port: int, **extra: str) -> dict[str, str]:
    return worker_env(cli_env, CRONSTREAM_SCHEDULER_HTTP_PORT=str(port), **extra)


async def role_is(url: str, role: str) -> bool:
    status, body = await readyz(url)
    return status == 200 and body.get("scheduler") == role


async def test_schedulers_answer_probes_as_leader_and_standby_with_cron_metrics(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    ports = free_port(), free_port()
    first = scheduler(scheduler_env(cli_env, ports[0]), tmp_path, "s1")
    second = scheduler(scheduler_env(cli_env, ports[1]), tmp_path, "s2")
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    first.start()
    try:
        await wait_ready(urls[0], first)
        await wait_for(lambda: role_is(urls[0], "leader"), 30, "the first to lead")
        assert await get(f"{urls[0]}/healthz") == (200, "ok\n")

        async def runs_counted() -> bool:
            _, text = await get(f"{urls[0]}/metrics")
            return 'cronstream_cron_runs_total{job="every_second",status="succeeded"}' in text

        await wait_for(runs_counted, 30, "the leader's runs in /metrics")
        _, text = await get(f"{urls[0]}/metrics")
        assert 'cronstream_scheduler_state{status="leading"} 1.0' in text
        assert 'cronstream_cron_tick_lag_seconds_count{job="every_second"}' in text
        # Probes and metrics only: no ingress, no status page, whatever the Host.
        assert (await get(f"{urls[0]}/"))[0] == 404
        assert (await get(f"{urls[0]}/events"))[0] == 404
        assert (await get(f"{urls[0]}/", Host="evil.example"))[0] == 421

        second.start()
        await wait_ready(urls[1], second)
        await wait_for(lambda: role_is(urls[1], "standby"), 30, "the second to stand by")
        _, text = await get(f"{urls[1]}/metrics")
        assert 'cronstream_scheduler_state{status="standby"} 1.0' in text
        assert "cronstream_cron_runs_total{" not in text  # only the leader runs jobs

        first.terminate()
        await wait_for(lambda: role_is(urls[1], "leader"), 30, "the standby to take over")
    finally:
        first.stop()
        second.stop()


def test_a_scheduler_port_in_use_is_one_line_naming_the_variable(
    cli_env: dict[str, str],
) -> None:
    port, line = port_in_use_line(["scheduler"], lambda port: scheduler_env(cli_env, port))
    assert str(port) in line and "CRONSTREAM_SCHEDULER_HTTP_PORT" in line


async def test_run_exits_non_zero_in_one_line_when_its_scheduler_fails(
    db: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    port = free_port()
    env = worker_env(cli_env, engine, CRONSTREAM_HTTP_PORT=str(port))
    process = WorkerProcess(env, tmp_path, "run", args=["run"])
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        await wait_ready(url, process)
        await wait_for(lambda: role_is(url, "leader"), 30, "run's scheduler to lead")
        # An operator tightens the grants: the scheduler can no longer read its jobs.
        await db.execute("REVOKE SELECT ON cron_jobs FROM current_user")
        await wait_for(lambda: not process.alive(), 90, "`cronstream run` to exit")
    finally:
        process.stop()
    assert process.process is not None
    assert process.process.returncode == 1, process.logs()[-3000:]
    errors = [line for line in process.logs().splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the worker stopped because its scheduler failed: scheduler: Postgres: "
        "permission denied for table cron_jobs"
    ], process.logs()[-3000:]
    assert "Traceback" not in process.logs()


def outage_lines(process: WorkerProcess) -> list[dict[str, object]]:
    found = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    return [entry for entry in found if str(entry["msg"]).startswith("Kafka ")]


def told_in_two_lines(process: WorkerProcess) -> bool:
    messages = [str(entry["msg"]) for entry in outage_lines(process)]
    return any(m.startswith("Kafka recovered") for m in messages)


async def test_scheduler_and_faust_engine_tell_a_broker_outage_in_two_lines(
    db: asyncpg.Connection, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("faust")
    with private_broker(tmp_path) as broker:
        env = worker_env(cli_env, "faust", CRONSTREAM_KAFKA_BOOTSTRAP=broker.bootstrap)
        leader = scheduler(env, tmp_path, "scheduler")
        worker = WorkerProcess(env, tmp_path, "faust-worker")
        leader.start()
        worker.start()
        try:
            await db.execute("INSERT INTO customers (id, name) VALUES (1, 'a')")
            await wait_for(lambda: "batch applied" in worker.logs(), 90, "a batch applied")
            broker.down()
            # The scheduler talks to Kafka when it has rows to send.
            await db.execute("INSERT INTO customers (id, name) VALUES (2, 'b')")
            await wait_for(lambda: bool(outage_lines(leader)), 60, "the scheduler: degraded")
            await wait_for(lambda: bool(outage_lines(worker)), 60, "the worker: degraded")
            broker.up()
            await wait_for(lambda: told_in_two_lines(leader), 90, "the scheduler: recovered")
            await wait_for(lambda: told_in_two_lines(worker), 90, "the worker: recovered")
            assert leader.alive() and worker.alive()
        finally:
            leader.stop()
            worker.stop()
    for process in (leader, worker):
        lines = outage_lines(process)
        assert [str(entry["msg"]).split(":")[0].split(" after")[0] for entry in lines] == [
            "Kafka degraded",
            "Kafka recovered",
        ], lines
        assert lines[0]["level"] == "warning" and lines[0]["brokers"], lines
        assert int(str(lines[1]["held_back"])) > 0, lines
