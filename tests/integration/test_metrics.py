"""A Prometheus scrape of a real `cronstream run` after traffic, read with prometheus-client's
own parser: what an operator's dashboard would see."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    WorkerProcess,
    count_events,
    create_counts_table,
    publish,
    worker_env,
)

HANDLERS = "tests.integration.handlers_under_test"
NOTES = """
CREATE TABLE notes (id text PRIMARY KEY, needs_sync boolean NOT NULL DEFAULT true);
INSERT INTO notes (id) VALUES ('a'), ('b'), (repeat('k', 1001));
"""
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def scrape(port: int) -> Samples | None:
    """Every sample of /metrics by (name, labels); None while the server is not up."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            if response.status != 200:
                return None
            text = await response.text()
    except aiohttp.ClientError:
        return None
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_scrape_after_traffic_shows_records_batches_lag_runs_and_scans(
    database_url: str, settings: Settings, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    topic = settings.sync_topic
    db = await asyncpg.connect(database_url)
    try:
        await db.execute(NOTES)
        await db.execute(
            "INSERT INTO cron_jobs (name, schedule, config) VALUES ('notes', '* * * * * *', $1)",
            '{"scan": {"mode": "flag", "table": "notes", "notify_channel": "notes_changed"}}',
        )
        await db.execute(
            "INSERT INTO cron_jobs (name, schedule, config) VALUES ('gone', '* * * * * *', $1)",
            '{"scan": {"mode": "flag", "table": "no_such_table"}}',
        )
    finally:
        await db.close()
    await create_counts_table(database_url)
    port = free_port()
    process = WorkerProcess(
        worker_env(cli_env, engine, CRONSTREAM_HTTP_PORT=str(port)),
        tmp_path,
        "run",
        args=["run", "--handlers", HANDLERS],
    )
    process.start()
    try:
        published = len(await publish(settings, list(count_events(50))))
        await clients.ensure_topics(settings, [topic])
        producer: AIOKafkaProducer = clients.producer(settings)
        try:
            await producer.start()  # inside: a cancelled start must still stop it
            await producer.send_and_wait(topic, value=b"not json at all", key=b"x:1")
        finally:
            await producer.stop()

        found: Samples = {}

        async def counted() -> bool:
            nonlocal found
            found = await scrape(port) or {}
            return (
                sample(found, "cronstream_records_applied_total", topic=topic) >= published + 2
                and sample(found, "cronstream_records_dead_lettered_total", topic=topic) >= 1
                and sample(found, "cronstream_cron_runs_total", job="notes", status="succeeded")
                >= 1
                and sample(found, "cronstream_cron_runs_total", job="gone", status="failed") >= 1
                and sample(found, "cronstream_notify_runs_total", job="notes") >= 1
            )

        await wait_for(counted, 60, "the scrape to count the traffic")

        # The scan after LISTEN counted once; a NOTIFY on the job's channel counts again.
        notified = sample(found, "cronstream_notify_runs_total", job="notes")
        db = await asyncpg.connect(database_url)
        try:
            await db.execute("SELECT pg_notify('notes_changed', '')")
        finally:
            await db.close()

        async def notify_counted() -> bool:
            nonlocal found
            found = await scrape(port) or {}
            return sample(found, "cronstream_notify_runs_total", job="notes") > notified

        await wait_for(notify_counted, 30, "the NOTIFY-triggered run to be counted")
    finally:
        process.stop()

    # The 50 count events, the garbage value and the two good rows the job emitted.
    assert sample(found, "cronstream_records_consumed_total", topic=topic) >= published + 3
    assert sample(found, "cronstream_batch_records_count") >= 1
    assert sample(found, "cronstream_batch_records_sum") >= published + 3
    assert sample(found, "cronstream_batch_seconds_count") >= 1
    assert sample(found, "cronstream_scanner_rows_emitted_total", job="notes") >= 2
    assert sample(found, "cronstream_scanner_rows_rejected_total", job="notes") >= 1  # the long key
    assert sample(found, "cronstream_cron_tick_lag_seconds_count", job="notes") >= 1
    # The one scheduler leads.
    assert sample(found, "cronstream_scheduler_state", status="leading") == 1
    assert sample(found, "cronstream_scheduler_state", status="standby") == 0
    lag = {
        dict(labels)["partition"]: value
        for (name, labels), value in found.items()
        if name == "cronstream_consumer_lag" and dict(labels)["topic"] == topic
    }
    assert lag, "no lag gauge for the topic's partitions"
    assert all(value >= 0 for value in lag.values())
    assert "Traceback" not in process.logs()
