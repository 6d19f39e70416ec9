"""The status page's server time with 300 partitions and 50 jobs.

usage: python -m bench.status_page [--rounds N]

In a fresh database and three new topics of 100 partitions each: a checkpoint for all
but 30 of the 300 partitions (a record in each), 50 jobs of 20 runs each (some
failed), 500 dead letters over the last hour, and an hour of samples (every 5 s) with
some partitions stalled. Then, `--rounds` times, what GET / does: collect (Postgres,
then Kafka, over the open connections the sampler lends the page) and render, each
timed apart, and the CPU this process spent on both (on a busy machine the wall time
mostly waits for it); also `to_json` (GET /status.json). The last
line printed is one JSON object of medians and maxima in milliseconds. Its topics are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import dump, fresh_database, own_cpu
from cronstream.config.settings import Settings
from cronstream.kafka import clients
from cronstream.pg import connections
from cronstream.status import collect, page
from cronstream.status.samples import Position, Samples

TOPICS, PARTITIONS, JOBS, RUNS, DEAD_LETTERS = 3, 100, 50, 20, 500
UNCHECKED = 30  # partitions with no checkpoint row
STALLED = 10


async def fill_kafka(settings: Settings) -> None:
    """A record in every partition, so log ends are not all zero."""
    await clients.ensure_topics(settings, settings.input_topics)
    producer: AIOKafkaProducer = clients.producer(settings)
    async with clients.started(producer):
        sent = [
            await producer.send(topic, value=b"{}", partition=p)
            for topic in settings.input_topics
            for p in range(PARTITIONS)
        ]
        await asyncio.gather(*sent)


async def fill_postgres(url: str, settings: Settings) -> None:
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url)
    try:
        keys = [(t, p) for t in settings.input_topics for p in range(PARTITIONS)]
        await connection.executemany(
            'INSERT INTO checkpoints (consumer, topic, partition, "offset") VALUES ($1, $2, $3, 0)',
            [(settings.consumer_group, t, p) for t, p in keys[UNCHECKED:]],
        )
        await connection.executemany(
            "INSERT INTO cron_jobs (name, schedule, config) VALUES ($1, '*/5 * * * *', "
            '\'{"scan": {"mode": "flag", "table": "t"}}\')',
            [(f"job_{j:02d}",) for j in range(JOBS)],
        )
        runs = []
        for j in range(JOBS):
            for r in range(RUNS):
                tick = now - timedelta(minutes=5 * (RUNS - r))
                status = "failed" if (j + r) % 7 == 0 else "succeeded"
                runs.append((f"job_{j:02d}@{tick.isoformat()}", f"job_{j:02d}", tick, status))
        await connection.executemany(
            "INSERT INTO cron_runs (id, job, scheduled_for, status, started_at, finished_at, "
            "node) VALUES ($1, $2, $3::timestamptz, $4, $3, $3 + interval '2 seconds', 'bench')",
            runs,
        )
        await connection.executemany(
            'INSERT INTO dead_letters (consumer, topic, partition, "offset", dlq_topic, '
            "error, attempts, created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
            [
                (
                    settings.consumer_group,
                    settings.sync_topic,
                    i % PARTITIONS,
                    i,
                    settings.dlq_topic(settings.sync_topic),
                    f"reason {i % 25}",
                    now - timedelta(seconds=7 * i),
                )
                for i in range(DEAD_LETTERS)
            ],
        )
    finally:
        await connection.close()


def an_hour_of_samples(settings: Settings) -> Samples:
    samples = Samples(settings.status_sample_seconds, settings.stall_seconds)
    keys = [(t, p) for t in settings.input_topics for p in range(PARTITIONS)]
    start = time.time() - 3600
    for i in range(int(3600 / settings.status_sample_seconds)):
        positions = {
            key: Position(
                checkpoint=(None if n < UNCHECKED else (3 if n < UNCHECKED + STALLED else 10 * i)),
                log_start=0,
                log_end=10 * i + 5,
            )
            for n, key in enumerate(keys)
        }
        samples.add(start + i * settings.status_sample_seconds, positions)
    return samples


def timed(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


async def main(rounds: int) -> None:
    base = Settings()
    run = uuid.uuid4().hex[:8]
    topics = [f"bench.status.{run}.{n}" for n in range(TOPICS)]
    async with fresh_database(base) as url:
        settings = Settings(
            database_url=url,
            sync_topic=topics[0],
            external_topics=",".join(topics[1:]),
            consumer_group=f"bench.status.{run}",
            topic_partitions=PARTITIONS,
        )
        try:
            await fill_kafka(settings)
            await fill_postgres(url, settings)
            samples = an_hour_of_samples(settings)
            reader = AIOKafkaConsumer(**clients.connection_options(settings))
            collecting, rendering, jsons, sizes, cpu = [], [], [], [], []
            async with clients.started(reader):
                pool = await connections.pool(settings, min_size=1, max_size=2)
                # The sampler's last reading of Kafka's committed offsets (none here).
                live = collect.Live(samples, [], reader, pool, committed={})
                await collect.collect(settings, None, live)  # warms them
                for _ in range(rounds):
                    began, cpu_began = time.perf_counter(), own_cpu()
                    status = await collect.collect(settings, None, live)
                    collected = time.perf_counter()
                    html = page.render(status)
                    rendered = time.perf_counter()
                    cpu.append(own_cpu() - cpu_began)
                    status.to_json()
                    jsons.append(time.perf_counter() - rendered)
                    collecting.append(collected - began)
                    rendering.append(rendered - collected)
                    sizes.append(len(html))
                await pool.close()
            assert not status.unreachable, status.unreachable
            own = status.own_partitions
            totals = [c + r for c, r in zip(collecting, rendering, strict=True)]
            print(
                dump(
                    {
                        "partitions": len(own),
                        "no_checkpoint": sum(p.checkpoint is None for p in own),
                        "stalled": sum(p.stalled_s is not None for p in own),
                        "jobs": len(status.jobs),
                        "runs": sum(len(r) for r in status.runs.values()),
                        "page_bytes": sizes[-1],
                        "collect": timed(collecting),
                        "render": timed(rendering),
                        "collect_and_render": timed(totals),
                        "collect_and_render_cpu": timed(cpu),
                        "to_json": timed(jsons),
                    }
                )
            )
        finally:
            async with clients.started(clients.Admin(base)) as admin:
                await admin.client.delete_topics(topics)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
