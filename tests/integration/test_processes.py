"""`cronstream worker --processes N` against real Kafka and Postgres: one supervisor, N
worker processes of one group, one HTTP surface."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from tests.integration.commands import run_cli
from tests.integration.handlers_under_test import MARKER_ENV
from tests.integration.http_helpers import free_port, get, http_env, wait_ready
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    HANDLERS,
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    count_events,
    create_counts_table,
    publish,
    publish_until,
    wait_until_at_end,
)

ARGS = ["worker", "--handlers", HANDLERS, "--processes", "2"]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def supervisor(cli_env: dict[str, str], port: int, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(http_env(cli_env, port), tmp_path, "supervisor", args=ARGS)
    yield process
    process.stop()


def children(supervisor: WorkerProcess) -> dict[int, list[int]]:
    """The pids each worker process number was started with, in order."""
    found: dict[int, list[int]] = {}
    for entry in supervisor.log_entries("worker process started"):
        found.setdefault(entry["worker_process"], []).append(entry["pid"])
    return found


def batches_of(supervisor: WorkerProcess, number: int) -> int:
    entries = supervisor.log_entries("batch applied")
    return sum(1 for entry in entries if entry["worker_process"] == number)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def applied_total(port: int, topic: str) -> float:
    """cronstream_records_applied_total of `topic` on the supervisor's /metrics."""
    status, text = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cronstream_records_applied_total" and sample.labels["topic"] == topic
    )


async def test_two_processes_share_the_partitions_apply_once_and_drain_on_sigterm(
    settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    engine: str,
    port: int,
    tmp_path: Path,
) -> None:
    await create_counts_table(database_url)
    marker = tmp_path / "batch-started"
    env = http_env(cli_env, port, CRONSTREAM_ENGINE=engine, **{MARKER_ENV: str(marker)})
    supervisor = WorkerProcess(env, tmp_path, "supervisor", args=ARGS)
    try:
        await two_processes_apply_once_and_drain(settings, database_url, supervisor, port, marker)
    finally:
        supervisor.stop()


async def two_processes_apply_once_and_drain(
    settings: Settings, database_url: str, supervisor: WorkerProcess, port: int, marker: Path
) -> None:
    supervisor.start()
    # Ready only when each worker process has partitions assigned and positioned.
    await wait_ready(f"http://127.0.0.1:{port}", supervisor, 120)
    ids = await publish(settings, list(count_events(600)))
    await wait_until_at_end(settings, supervisor, settings.sync_topic, 90)
    assert_exactly_once(await applied_counts(database_url), ids)

    batches = supervisor.log_entries("batch applied")
    assert {entry["worker_process"] for entry in batches} == {1, 2}
    # Summed over both children, as each counted its own.
    assert await applied_total(port, settings.sync_topic) == len(ids)
    status, _ = await get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200

    # SIGTERM while a batch is being applied: it is finished, not cut off or doubled.
    slow = [
        Event.new(type="slow_count", source="t", entity="item", key=i, payload={"hold_seconds": 3})
        for i in range(50)
    ]
    slow_ids = await publish(settings, slow)
    await wait_for(marker.exists, 60, "a slow batch to start")
    pids = [pid for started in children(supervisor).values() for pid in started]
    assert len(pids) == 2
    code, seconds = supervisor.terminate()
    assert code == 0, supervisor.logs()[-3000:]
    assert seconds < float(supervisor.env["CRONSTREAM_SHUTDOWN_TIMEOUT"])
    logs = supervisor.logs()
    assert logs.count("SIGTERM received: draining") == 3, logs[-3000:]  # both and the supervisor
    assert "worker processes drained" in logs
    assert not [pid for pid in pids if alive(pid)]
    counts = await applied_counts(database_url)
    drained = [i for i in slow_ids if i in counts]
    started = int(await asyncio.to_thread(marker.read_text))
    assert len(drained) >= started  # at least the batch under way
    assert all(counts[i] == 1 for i in drained)


async def test_a_killed_worker_process_is_started_again_and_nothing_is_lost_or_doubled(
    settings: Settings, database_url: str, supervisor: WorkerProcess, port: int
) -> None:
    await create_counts_table(database_url)
    supervisor.start()
    await wait_ready(f"http://127.0.0.1:{port}", supervisor, 120)
    done = asyncio.Event()
    publishing = asyncio.create_task(publish_until(settings, done))
    try:
        await wait_for(lambda: len(supervisor.log_entries("batch applied")) >= 4, 60, "batches")
        [victim] = children(supervisor)[1]
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: len(children(supervisor)[1]) == 2, 30, "a new worker process 1")
        before = batches_of(supervisor, 1)  # the killed one logs no more
        await wait_ready(f"http://127.0.0.1:{port}", supervisor, 120)
        await wait_for(
            lambda: batches_of(supervisor, 1) > before, 60, "the new worker process 1 to apply"
        )
    finally:
        done.set()
        ids = await publishing
    await wait_until_at_end(settings, supervisor, settings.sync_topic, 120)
    assert_exactly_once(await applied_counts(database_url), ids)
    assert "was killed by SIGKILL; starting it again" in supervisor.logs()
    status, text = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'cronstream_worker_restarts_total{status="killed"} 1.0' in text, text[-2000:]
    assert len(children(supervisor)[2]) == 1  # the other one ran on


async def test_a_worker_process_failing_on_its_configuration_stops_all_in_one_line(
    cli_env: dict[str, str], port: int
) -> None:
    env = http_env(cli_env, port)
    args = ["worker", "--handlers", "no_such_handlers_module", "--processes", "2"]
    result = run_cli(args, env, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert (
        "a configuration error: cannot import handler module 'no_such_handlers_module'"
        in (lines[0])
    )
    assert "all worker processes stopped" in lines[0]
    assert "Traceback" not in result.stderr
    # Not started again: each of the two ran once.
    assert result.stderr.count('"msg": "worker process started"') == 2


async def test_worker_processes_whose_supervisor_was_killed_drain_and_exit(
    supervisor: WorkerProcess, port: int
) -> None:
    supervisor.start()
    await wait_ready(f"http://127.0.0.1:{port}", supervisor, 120)
    pids = [pid for started in children(supervisor).values() for pid in started]
    supervisor.kill()
    await wait_for(lambda: not any(alive(pid) for pid in pids), 30, "the orphans to exit")
    logs = supervisor.logs()
    assert logs.count("the supervisor is gone: draining") == 2, logs[-3000:]
    # A supervisor killed cannot remove its metrics directory: the log says which it is.
    [made] = supervisor.log_entries("worker processes' metrics directory made")
    shutil.rmtree(made["metrics_dir"])
