"""The arms that are not a consumer reading the prefilled topic: a scan job's emitting,
end-to-end latency under a steady load, and recovery from a killed worker."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import asyncpg

from bench.arms import POLL, end, spawn, worker_env
from bench.common import Arm, Stopwatch, fresh_database
from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.kafka import clients
from cronstream.schedulers.jobs import ScanConfig
from cronstream.schedulers.scan import scanner_for


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
