"""No lost and no doubled effect: workers killed, partitions moved, the broker restarted.

Every test publishes events whose handler increments a per-event counter in the same
transaction as the checkpoint, then waits until the checkpoints reach the log end and
asserts every counter is exactly 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cronstream.config.settings import Settings
from tests.integration.kafka_helpers import end_offsets, wait_for
from tests.integration.workers import (
    ROOT,
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    checkpoints,
    checkpoints_at_end,
    commit_offsets,
    count_events,
    create_counts_table,
    kafka_committed,
    publish,
    publish_until,
    worker_env,
    workers,
)

PARTITIONS = "6"


def env_for(cli_env: dict[str, str], engine: str) -> dict[str, str]:
    return worker_env(cli_env, engine, CRONSTREAM_TOPIC_PARTITIONS=PARTITIONS)


async def applied_total(database_url: str) -> int:
    return len(await applied_counts(database_url))


async def wait_for_progress(database_url: str, beyond: int, seconds: float) -> int:
    """Wait until more than `beyond` events are applied; return how many are."""
    seen = beyond

    async def moved() -> bool:
        nonlocal seen
        seen = await applied_total(database_url)
        return seen > beyond

    await wait_for(moved, seconds, f"more than {beyond} events applied")
    return seen


async def wait_for_the_end(settings: Settings, pool: list[WorkerProcess], seconds: float) -> None:
    async def at_end() -> bool:
        for worker in pool:
            if worker.starts and not worker.alive() and worker.process is not None:
                assert worker.process.returncode in (0, -9), worker.logs()[-3000:]
        return await checkpoints_at_end(settings, settings.sync_topic)

    await wait_for(at_end, seconds, "checkpoints to reach the log end")


async def watch_commit_never_passes_checkpoint(settings: Settings, violations: list[str]) -> None:
    """Sample Kafka's committed offsets, then the checkpoints, until cancelled.

    Checkpoints only grow, so reading them after the commits can only hide a violation,
    never invent one: any committed offset beyond checkpoint + 1 seen here is real.
    """
    partitions = int(PARTITIONS)
    while True:
        committed = await kafka_committed(settings, settings.sync_topic, partitions)
        done = await checkpoints(settings, settings.sync_topic)
        for partition, offset in committed.items():
            if offset > done.get(partition, -1) + 1:
                violations.append(
                    f"partition {partition}: Kafka committed {offset}, "
                    f"checkpoint {done.get(partition)}"
                )
        await asyncio.sleep(0.2)


async def test_sigkill_workers_repeatedly_while_events_flow(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    settings = settings.model_copy(update={"topic_partitions": int(PARTITIONS)})
    pool = workers(env_for(cli_env, engine), tmp_path, 2)
    rng = random.Random(20261127)
    began = time.monotonic()
    violations: list[str] = []
    for worker in pool:
        worker.start()
    monitor = asyncio.create_task(watch_commit_never_passes_checkpoint(settings, violations))
    try:
        kills_done = asyncio.Event()
        producing = asyncio.create_task(publish_until(settings, kills_done))
        for _ in range(6):
            victim = rng.choice(pool)
            # Kill a worker that holds partitions and is applying batches right now.
            await wait_for(
                victim.applied_a_batch,
                90,
                f"{victim.name} to apply a batch",
            )
            await asyncio.sleep(rng.uniform(0, 0.5))
            victim.kill()
            victim.start()
        kills_done.set()
        ids = await producing
        await wait_for_the_end(settings, pool, 240)
    finally:
        # Awaited: a sample cut off inside a Kafka call must still close its consumer.
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        for worker in pool:
            worker.stop()
    elapsed = time.monotonic() - began
    assert not violations, violations[:5]
    assert_exactly_once(await applied_counts(database_url), ids)
    # The kills landed between a Postgres commit and Kafka's, and the checkpoints, not
    # luck, kept those events from being applied twice: faust redelivers them and the
    # checkpoint filter drops them; the batch engine starts past them at checkpoint + 1.
    if engine == "faust":
        assert sum(worker.duplicates_dropped() for worker in pool) > 0
    else:
        assert sum(worker.started_ahead_of_kafka() for worker in pool) > 0
    print(f"\n{len(ids)} events, 6 SIGKILLs, 2 workers, {engine} engine: {elapsed:.1f}s")


async def test_partitions_move_between_workers(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    first, second = workers(env_for(cli_env, engine), tmp_path, 2)
    first.start()
    try:
        done = asyncio.Event()
        producing = asyncio.create_task(publish_until(settings, done, pause=0.1))
        await wait_for_progress(database_url, 0, 90)
        second.start()  # takes over some partitions mid-stream
        await wait_for(second.applied_a_batch, 90, "the second worker to apply a batch")
        code, _ = first.terminate()  # hands all of them to the second
        assert code == 0, first.logs()[-3000:]
        batches = second.batches_since_start()
        await wait_for(
            lambda: second.batches_since_start() > batches + 3,
            90,
            "the second worker to go on with every partition",
        )
        done.set()
        ids = await producing
        await wait_for_the_end(settings, [second], 180)
    finally:
        first.stop()
        second.stop()
    assert_exactly_once(await applied_counts(database_url), ids)


def local_kafka(settings: Settings) -> bool:
    port = settings.kafka_bootstrap.rsplit(":", 1)[-1]
    pidfile = ROOT / ".cache" / "kafka" / f"kafka-{port}.pid"
    return settings.kafka_bootstrap.startswith("127.0.0.1:") and pidfile.exists()


def local_postgres(settings: Settings) -> bool:
    url = urlsplit(settings.database_dsn)
    return (
        url.hostname == "127.0.0.1" and (ROOT / ".cache" / "postgres" / f"data-{url.port}").is_dir()
    )


def service_script(service: str, action: str) -> None:
    subprocess.run([str(ROOT / "scripts" / f"{service}.sh"), action], check=True, timeout=180)


@pytest.mark.serial
async def test_broker_restart_while_a_worker_runs(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    if not local_kafka(settings):
        pytest.skip("restarting the broker needs the local Kafka of scripts/kafka.sh")
    await create_counts_table(database_url)
    worker = WorkerProcess(env_for(cli_env, engine), tmp_path, "worker")
    before = list(count_events(500))
    after = list(count_events(500, start=500))
    worker.start()
    try:
        ids = await publish(settings, before)
        await wait_for_progress(database_url, 0, 60)
        await asyncio.to_thread(service_script, "kafka", "down")
        await asyncio.to_thread(service_script, "kafka", "up")
        ids += await publish(settings, after)
        await wait_for_the_end(settings, [worker], 180)
        if engine == "batch":
            await wait_for(lambda: "Kafka recovered" in worker.logs(), 60, "the recovered line")
        assert worker.alive(), "the worker must survive a broker restart"
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), ids)
    assert_outage_told_in_two_lines(worker.logs(), engine)


# A line or two may still get through (an error aiokafka raises once, not per attempt).
AT_MOST_LIBRARY_ERRORS = 3


def assert_outage_told_in_two_lines(log: str, engine: str) -> None:
    """aiokafka's per-attempt errors stay out of the log (it logged thousands of ERROR
    lines for one restart); the batch engine says "degraded" once and "recovered" once."""
    found = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    library_errors = [
        entry["msg"]
        for entry in found
        if entry["level"] == "error" and entry["logger"].startswith("aiokafka")
    ]
    assert len(library_errors) <= AT_MOST_LIBRARY_ERRORS, library_errors
    if engine != "batch":  # faust's engine only demotes them
        return
    messages = [entry["msg"] for entry in found]
    degraded = [i for i, msg in enumerate(messages) if msg.startswith("Kafka degraded")]
    recovered = [i for i, msg in enumerate(messages) if msg.startswith("Kafka recovered")]
    assert len(degraded) == 1, messages
    assert len(recovered) == 1, messages
    assert degraded[0] < recovered[0]
    line = found[degraded[0]]
    assert line["level"] == "warning"
    assert line["brokers"], line  # which broker(s) are unreachable
    assert "waiting" in line, line  # and which partitions wait for them
    assert found[recovered[0]]["held_back"] > 0, found[recovered[0]]


@pytest.mark.serial
async def test_postgres_outage_holds_the_worker_back_until_it_returns(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    if not local_postgres(settings):
        pytest.skip("stopping Postgres needs the local cluster of scripts/postgres.sh")
    await create_counts_table(database_url)
    worker = WorkerProcess(env_for(cli_env, engine), tmp_path, "worker")
    before = list(count_events(300))
    during = list(count_events(300, start=300))
    worker.start()
    try:
        ids = await publish(settings, before)
        await wait_for_the_end(settings, [worker], 60)
        await asyncio.to_thread(service_script, "postgres", "down")
        try:
            ids += await publish(settings, during)
            await wait_for(
                lambda: "not applied, retrying" in worker.logs(),
                60,
                "the worker to report that Postgres is unavailable",
            )
            assert worker.alive(), "the worker must wait for Postgres, not exit"
        finally:
            await asyncio.to_thread(service_script, "postgres", "up")
        await wait_for_the_end(settings, [worker], 120)
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), ids)


async def test_kafka_offset_ahead_of_the_checkpoint_is_reported_and_rewound(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    """The protocol never lets this happen; an operator's hand or a bug still might."""
    await create_counts_table(database_url)
    worker = WorkerProcess(env_for(cli_env, engine), tmp_path, "worker")
    first = list(count_events(200))
    second = list(count_events(400, start=200))
    worker.start()
    try:
        ids = await publish(settings, first)
        await wait_for_the_end(settings, [worker], 60)
        code, _ = worker.terminate()
        assert code == 0
        ids += await publish(settings, second)
        # Move the group's committed offsets to the log end, past the unapplied events.
        ends = await end_offsets(settings, settings.sync_topic)
        await commit_offsets(settings, settings.sync_topic, ends)
        worker.start()
        await wait_for_the_end(settings, [worker], 90)
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), ids)
    assert "is ahead of the Postgres checkpoint" in worker.logs()
