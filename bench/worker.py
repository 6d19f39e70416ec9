"""Applying: one `cronstream worker` (projection handler, Postgres checkpoints) against a
bare aiokafka consumer that only reads the same events, in the same run.

usage: python -m bench.worker [N]
The worker's time runs from its first applied batch to the checkpoints reaching the log
end, so process start-up and the group join are not counted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.common import Timing, events, report, settings, timed
from cronstream import kafka, migrate
from cronstream.publish import send
from cronstream.settings import Settings


async def read_raw(config: Settings, topic: str, n: int) -> Timing:
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka.connection_options(config),
    )
    await consumer.start()
    seen = 0
    with timed() as timing:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(records) for records in batch.values())
    await consumer.stop()
    return timing


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def checkpointed(connection: asyncpg.Connection, group: str) -> int:
    value = await connection.fetchval(
        'SELECT coalesce(sum("offset" + 1), 0) FROM checkpoints WHERE consumer = $1', group
    )
    return int(value)


async def main(n: int) -> None:
    config = settings()
    connection = await asyncpg.connect(config.database_dsn)
    await migrate.migrate(connection, config.migrations_dir)
    await kafka.ensure_topics(config, [config.sync_topic])
    producer = kafka.producer(config)
    await producer.start()
    await send(producer, config.sync_topic, enumerate(events(n), start=1))
    await producer.stop()

    baseline = await read_raw(config, config.sync_topic, n)

    env = os.environ | {
        "CRONSTREAM_SYNC_TOPIC": config.sync_topic,
        "CRONSTREAM_CONSUMER_GROUP": config.consumer_group,
        "CRONSTREAM_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "cronstream", "worker"]
    if os.environ.get("BENCH_PROFILE"):  # write a cProfile of the worker to this path
        command[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    worker = subprocess.Popen(command, env=env)  # noqa: ASYNC220 - started once, not awaited
    try:
        while await checkpointed(connection, config.consumer_group) == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        cpu_before = process_cpu(worker.pid)
        with timed() as ours:
            while await checkpointed(connection, config.consumer_group) < n:
                await asyncio.sleep(0.02)
                if worker.poll() is not None:
                    raise SystemExit("the worker exited")
        ours.extra["worker_cpu_s"] = round(process_cpu(worker.pid) - cpu_before, 3)
        ours.extra["batch_size"] = config.batch_size
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        await connection.close()
    report("worker", n, baseline, ours)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
