"""`make bench`: cronstream against what a user would write instead, in one run.

usage: python -m bench.run [--events N] [--quick]

Every consuming arm reads the same prefilled topic (N events, 6 partitions, N/2
distinct keys, payloads of about 200 bytes) into a database of its own. Consumer arms
are timed from their first applied batch to the last event, so process start-up and
the group join are not counted. The last line printed is one JSON object; --quick
runs the same arms on 2,000 events, to check the shape, not the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bench import loops
from bench.common import Arm, Stopwatch, dump, fresh_database, process_cpu, ratio, workload
from bench.faust_agent import PROGRESS_TABLE
from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.kafka import clients
from cronstream.schedulers.jobs import ScanConfig
from cronstream.schedulers.scan import scanner_for

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.02


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def worker_env(
    settings: Settings, database_url: str, topic: str, group: str, **extra: str
) -> dict[str, str]:
    return os.environ | {
        "CRONSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CRONSTREAM_DATABASE_URL": database_url,
        "CRONSTREAM_SYNC_TOPIC": topic,
        "CRONSTREAM_CONSUMER_GROUP": group,
        "CRONSTREAM_LOG_LEVEL": "WARNING",
        "CRONSTREAM_HTTP_PORT": "0",  # several workers at once: none serves HTTP
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def spawn(args: list[str], env: dict[str, str], python: str = "") -> subprocess.Popen[bytes]:
    """`python -m args...` (this Python), or `python args...` when another is named."""
    command = [python, *args] if python else [sys.executable, "-m", *args]
    # Their stdout (the faust banner) would mix with ours, whose last line is the result.
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


async def until_done(
    progress: Callable[[], Awaitable[int]], n: int, processes: list[subprocess.Popen[bytes]]
) -> Arm:
    """Time `processes` from their first progress until `progress` reaches `n`."""
    deadline = time.monotonic() + 600
    while (first := await progress()) == 0:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit("bench: a measured process exited or never started")
        await asyncio.sleep(POLL)
    cpu = sum(process_cpu(p.pid) for p in processes)
    began = time.perf_counter()
    while (done := await progress()) < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit("bench: a measured process exited before the end")
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - began
    return Arm(done - first, elapsed, sum(process_cpu(p.pid) for p in processes) - cpu)


async def workers_arm(settings: Settings, topic: str, n: int, engine: str, count: int = 1) -> Arm:
    """`cronstream worker` processes with `engine`, until their checkpoints reach the end."""
    async with fresh_database(settings) as url:
        group = f"{topic}.{engine}.{count}.{uuid.uuid4().hex[:6]}"
        env = worker_env(settings, url, topic, group, CRONSTREAM_ENGINE=engine)
        connection = await asyncpg.connect(url)
        processes = [spawn(["cronstream", "worker"], env) for _ in range(count)]
        try:

            async def checkpointed() -> int:
                value = await connection.fetchval(
                    'SELECT coalesce(sum("offset" + 1), 0) FROM checkpoints WHERE consumer = $1',
                    group,
                )
                return int(value)

            return await until_done(checkpointed, n, processes)
        finally:
            end(processes)
            await connection.close()


async def faust_agent_arm(settings: Settings, topic: str, n: int) -> Arm:
    async with fresh_database(settings) as url:
        connection = await asyncpg.connect(url)
        await connection.execute(PROGRESS_TABLE)
        await connection.execute("INSERT INTO bench_progress VALUES (0)")
        env = worker_env(settings, url, topic, "-") | {
            "BENCH_TOPIC": topic,
            "BENCH_GROUP": f"{topic}.faust_agent",
            "BENCH_DATABASE_URL": url,
        }
        process = spawn(["bench.faust_agent"], env)
        try:

            async def progress() -> int:
                return int(await connection.fetchval("SELECT events FROM bench_progress"))

            return await until_done(progress, n, [process])
        finally:
            end([process])
            await connection.close()


async def quix_arm(settings: Settings, topic: str, n: int, keys: int, python: str) -> Arm:
    """Quix Streams with its PostgreSQLSink (upsert mode, defaults), from its first record
    until every key holds its final version."""
    async with fresh_database(settings) as url:
        connection = await asyncpg.connect(url)
        with tempfile.TemporaryDirectory() as folder:
            marker = Path(folder) / "first-record"
            env = worker_env(settings, url, topic, "-") | {
                "BENCH_TOPIC": topic,
                "BENCH_GROUP": f"{topic}.quix",
                "BENCH_DATABASE_URL": url,
                "BENCH_MARKER": str(marker),
            }
            process = spawn([str(ROOT / "bench" / "quix_app.py")], env, python)
            try:
                deadline = time.monotonic() + 600
                while not marker.exists():
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("bench: the Quix app exited or never started")
                    await asyncio.sleep(POLL)
                cpu = process_cpu(process.pid)
                began = float(marker.read_text())
                while await final_rows(connection, n - keys) < keys:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("bench: the Quix app exited before the end")
                    await asyncio.sleep(0.1)
                return Arm(n, time.time() - began, process_cpu(process.pid) - cpu)
            finally:
                end([process])
                await connection.close()


async def final_rows(connection: asyncpg.Connection, from_version: int) -> int:
    try:
        value = await connection.fetchval(
            "SELECT count(*) FROM quix_projection WHERE version >= $1", from_version
        )
    except asyncpg.UndefinedTableError:  # created at its first checkpoint
        return 0
    return int(value)


async def scan_emit_arm(settings: Settings, n: int) -> Arm:
    """A flag-mode scan job's body over `n` flagged rows, until acknowledged and marked."""
    topic = f"bench.scan.{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(settings, [topic])
    async with fresh_database(settings) as url:
        connection = await asyncpg.connect(url)
        producer = clients.producer(settings)
        await producer.start()
        try:
            await connection.execute(SCAN_TABLE)
            await connection.execute(
                "INSERT INTO bench_rows (id, name, note) "
                "SELECT i, 'item-' || i, repeat('x', 150) FROM generate_series(1, $1) AS i",
                n,
            )
            config = ScanConfig(mode="flag", table="bench_rows", entity="item")
            scanner = scanner_for("bench", config, connection, producer, topic, "bench")
            watch = Stopwatch()
            emitted = await scanner.scan()
            arm = watch.stop(emitted)
            left = await connection.fetchval("SELECT count(*) FROM bench_rows WHERE needs_sync")
            if emitted != n or left:
                raise SystemExit(f"bench: the scan emitted {emitted} of {n}, {left} unmarked")
            return arm
        finally:
            await producer.stop()
            await connection.close()


SCAN_TABLE = """
CREATE TABLE bench_rows (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    note text NOT NULL,
    needs_sync boolean NOT NULL DEFAULT true
)
"""


async def handwritten_arm(settings: Settings, topic: str, n: int) -> Arm:
    async with fresh_database(settings) as url:
        return await loops.handwritten(settings, url, topic, n)


def publish_arm(settings: Settings, topic: str, events: list[Event]) -> Arm:
    """`cronstream publish --file`, start-up included, as a user runs it."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as file:
        file.writelines(event.encode() + b"\n" for event in events)
        file.flush()
        env = worker_env(settings, settings.database_dsn, topic, "-")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        watch = Stopwatch()
        subprocess.run(
            [sys.executable, "-m", "cronstream", "publish", "--file", file.name, "--no-progress"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        arm = watch.stop(len(events))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        arm.cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return arm


async def paced(
    settings: Settings, topic: str, rate: int, seconds: float, stop: asyncio.Event | None = None
) -> int:
    """Send events at `rate`/s with their send time in the payload; return how many."""
    producer = clients.producer(settings)
    await producer.start()
    sent, began = 0, time.monotonic()
    try:
        while time.monotonic() - began < seconds and not (stop and stop.is_set()):
            due = int((time.monotonic() - began) * rate)
            for _ in range(due - sent):
                event = Event.new(
                    type="sync_required",
                    source="bench",
                    entity="latency",
                    key=sent,
                    payload={"sent_at": time.time()},
                )
                await producer.send(topic, value=event.encode(), key=event.kafka_key)
                sent += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def applied_rows(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM entity_projection"))


async def wait_rows(connection: asyncpg.Connection, at_least: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while await applied_rows(connection) < at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: fewer than {at_least} rows applied in {seconds:.0f}s")
        await asyncio.sleep(POLL)


async def e2e_latency(settings: Settings, seconds: float) -> dict[str, float]:
    """p50/p99 ms from the producer's send to the applying transaction, at 2,000 events/s."""
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(settings, [topic])
    async with fresh_database(settings) as url:
        connection = await asyncpg.connect(url)
        process = spawn(["cronstream", "worker"], worker_env(settings, url, topic, f"{topic}.g"))
        try:
            await paced(settings, topic, 100, 0.05)  # warm up: joined and applying
            await wait_rows(connection, 1, 120)
            await connection.execute("TRUNCATE entity_projection")
            sent = await paced(settings, topic, 2000, seconds)
            await wait_rows(connection, sent, 120)
            rows = await connection.fetch(
                "SELECT (extract(epoch FROM updated_at) - (payload->>'sent_at')::float8) * 1000"
                " AS ms FROM entity_projection"
            )
        finally:
            end([process])
            await connection.close()
    latencies = sorted(row["ms"] for row in rows)
    return {
        "p50": round(statistics.median(latencies), 1),
        "p99": round(latencies[int(len(latencies) * 0.99) - 1], 1),
        "events": len(latencies),
    }


async def recovery(settings: Settings, **extra: str) -> float:
    """Seconds from SIGKILL of a loaded worker, restarted at once, to its next applied batch."""
    topic = f"bench.recovery.{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(settings, [topic])
    async with fresh_database(settings) as url:
        connection = await asyncpg.connect(url)
        env = worker_env(settings, url, topic, f"{topic}.g", **extra)
        stop = asyncio.Event()
        load = asyncio.create_task(paced(settings, topic, 2000, 600, stop))
        process = spawn(["cronstream", "worker"], env)
        try:
            await wait_rows(connection, 1000, 120)
            process.kill()
            process.wait()
            killed = time.time()
            process = spawn(["cronstream", "worker"], env)
            while True:
                latest = await connection.fetchval(
                    "SELECT extract(epoch FROM max(updated_at))::float8 FROM checkpoints"
                )
                if latest > killed:
                    return round(float(latest) - killed, 2)
                await asyncio.sleep(POLL)
        finally:
            stop.set()
            await load
            end([process])
            await connection.close()


async def main(n: int, latency_seconds: float) -> dict[str, object]:
    settings = Settings()
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(settings, [topic, f"{topic}.raw"])
    events = list(workload(n, keys=max(n // 2, 1)))
    arms: dict[str, Arm] = {}
    say(f"raw_produce: {n} events")
    arms["raw_produce"] = await loops.raw_produce(
        settings, f"{topic}.raw", [(e.kafka_key, e.encode()) for e in events]
    )
    say("publish: cronstream publish --file (fills the topic every consumer arm reads)")
    arms["publish"] = publish_arm(settings, topic, events)
    say("raw_read")
    arms["raw_read"] = await loops.raw_read(settings, topic, n)
    say("handwritten")
    arms["handwritten"] = await handwritten_arm(settings, topic, n)
    say("cronstream_batch")
    arms["cronstream_batch"] = await workers_arm(settings, topic, n, "batch")
    say("cronstream_faust")
    arms["cronstream_faust"] = await workers_arm(settings, topic, n, "faust")
    say("faust_agent")
    arms["faust_agent"] = await faust_agent_arm(settings, topic, n)
    quix_python = os.environ.get("BENCH_QUIX_PYTHON")
    if quix_python:
        say("quix")
        arms["quix"] = await quix_arm(settings, topic, n, max(n // 2, 1), quix_python)
    else:
        say("quix: skipped (BENCH_QUIX_PYTHON names no Python with quixstreams)")
    say("two_workers")
    arms["two_workers"] = await workers_arm(settings, topic, n, "batch", count=2)
    say(f"scan_emit: {n} flagged rows")
    arms["scan_emit"] = await scan_emit_arm(settings, n)
    say("e2e_latency_ms")
    latency = await e2e_latency(settings, latency_seconds)
    say("recovery_s")
    recovery_s = await recovery(settings)
    say("recovery_static_s: the same with CRONSTREAM_WORKER_ID (static membership)")
    recovery_static_s = await recovery(settings, CRONSTREAM_WORKER_ID="bench-worker-1")
    batch = arms["cronstream_batch"]
    return {
        "events": n,
        "partitions": settings.topic_partitions,
        "cpus": os.cpu_count(),
        **{name: arm.as_json() for name, arm in arms.items()},
        "e2e_latency_ms": latency,
        "recovery_s": recovery_s,
        "recovery_static_s": recovery_static_s,
        "batch_vs_handwritten": ratio(batch, arms["handwritten"]),
        "batch_vs_faust_agent": ratio(batch, arms["faust_agent"]),
        "batch_vs_quix": ratio(batch, arms["quix"]) if "quix" in arms else None,
        "batch_vs_raw_read": ratio(batch, arms["raw_read"]),
        "faust_engine_vs_handwritten": ratio(arms["cronstream_faust"], arms["handwritten"]),
        "two_workers_vs_one": ratio(arms["two_workers"], batch),
        "publish_vs_raw_produce": ratio(arms["publish"], arms["raw_produce"]),
        "scan_vs_raw_produce": ratio(arms["scan_emit"], arms["raw_produce"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the topic")
    parser.add_argument("--quick", action="store_true", help="2,000 events: the shape only")
    options = parser.parse_args()
    n = 2000 if options.quick else options.events
    print(dump(asyncio.run(main(n, 1.0 if options.quick else 5.0))))
