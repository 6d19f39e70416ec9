"""The measured consumer arms that run as processes of their own, and how they are timed:
`cronstream worker` (each engine, several workers, --processes), the faust agent, Quix."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import asyncpg

from bench import loops
from bench.common import Arm, Stopwatch, fresh_database, peak_rss_mb, process_cpu, process_tree
from bench.faust_agent import PROGRESS_TABLE
from cronstream.config.settings import Settings

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


def tree_cpu(processes: list[subprocess.Popen[bytes]]) -> float:
    return sum(process_cpu(pid) for p in processes for pid in process_tree(p.pid))


def tree_rss(processes: list[subprocess.Popen[bytes]]) -> float:
    return peak_rss_mb(pid for p in processes for pid in process_tree(p.pid))


async def until_done(
    progress: Callable[[], Awaitable[int]], n: int, processes: list[subprocess.Popen[bytes]]
) -> Arm:
    """Time `processes` from their first progress until `progress` reaches `n`; their
    CPU and peak RSS include their children's."""
    deadline = time.monotonic() + 1200
    while (first := await progress()) == 0:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit("bench: a measured process exited or never started")
        await asyncio.sleep(POLL)
    cpu = tree_cpu(processes)
    began = time.perf_counter()
    while (done := await progress()) < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise SystemExit("bench: a measured process exited before the end")
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - began
    return Arm(done - first, elapsed, tree_cpu(processes) - cpu, tree_rss(processes))


async def workers_arm(
    settings: Settings,
    topic: str,
    n: int,
    engine: str,
    count: int = 1,
    options: Iterable[str] = (),
    **extra: str,
) -> Arm:
    """`count` processes of `cronstream worker [options]` with `engine`, until their
    checkpoints reach `n` (all topics of the group: an empty sync topic adds nothing)."""
    async with fresh_database(settings) as url:
        group = f"{topic}.{engine}.{count}.{uuid.uuid4().hex[:6]}"
        env = worker_env(settings, url, topic, group, CRONSTREAM_ENGINE=engine) | extra
        connection = await asyncpg.connect(url)
        processes = [spawn(["cronstream", "worker", *options], env) for _ in range(count)]
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


def worker_flag(flag: str) -> bool:
    """Whether `cronstream worker --help` offers `flag`."""
    shown = subprocess.run(
        [sys.executable, "-m", "cronstream", "worker", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    return flag in shown.stdout


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
                deadline = time.monotonic() + 1200
                while not marker.exists():
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("bench: the Quix app exited or never started")
                    await asyncio.sleep(POLL)
                cpu = process_cpu(process.pid)
                began = float(marker.read_text())
                # Counting a large table's rows costs CPU the measured process then lacks.
                pause = max(0.1, n / 2_000_000)
                while await final_rows(connection, n - keys) < keys:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("bench: the Quix app exited before the end")
                    await asyncio.sleep(pause)
                elapsed = time.time() - began
                return Arm(n, elapsed, process_cpu(process.pid) - cpu, tree_rss([process]))
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


async def handwritten_arm(settings: Settings, topic: str, n: int) -> Arm:
    async with fresh_database(settings) as url:
        return await loops.handwritten(settings, url, topic, n)


def publish_arm(settings: Settings, topic: str, values: Iterable[bytes]) -> Arm:
    """`cronstream publish --file` of encoded events, start-up included, as a user runs it."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as file:
        events = 0
        for value in values:
            file.write(value + b"\n")
            events += 1
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
        arm = watch.stop(events)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        arm.cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return arm
