"""Kafka's outage lines are true: none while the broker answers (a new topic's partitions
getting their leaders, a slow or blocking handler), one "degraded" and one "recovered"
for an outage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.kafka.health import WATCH_INTERVAL
from tests.integration.kafka_helpers import topic_exists, wait_for
from tests.integration.private_kafka import private_broker
from tests.integration.workers import (
    WorkerProcess,
    count_events,
    create_counts_table,
    publish,
    wait_until_at_end,
    worker_env,
)

PARTITIONS = "6"
OUTAGE_LINES = ("Kafka degraded", "Kafka recovered")


def outage_lines(worker: WorkerProcess) -> list[dict[str, object]]:
    found = [json.loads(line) for line in worker.logs().splitlines() if line.startswith("{")]
    # Not "Kafka offset commit failed": a handler blocking past the session timeout
    # makes the group rebalance, and a commit refused then is no outage line.
    return [entry for entry in found if str(entry["msg"]).startswith(OUTAGE_LINES)]


def told(worker: WorkerProcess) -> list[str]:
    """The outage lines' kinds, in order: "Kafka degraded" or "Kafka recovered"."""
    return [" ".join(str(entry["msg"]).split()[:2]).rstrip(":") for entry in outage_lines(worker)]


def slow_events(n: int, hold_seconds: float, event_type: str = "slow_count") -> list[Event]:
    return [
        Event.new(
            type=event_type,
            source="t",
            entity="item",
            key=i,
            payload={"hold_seconds": hold_seconds},
            id=f"{event_type}-{i}",
        )
        for i in range(n)
    ]


async def test_a_worker_on_a_topic_it_creates_tells_no_outage(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    env = worker_env(cli_env, engine, CRONSTREAM_TOPIC_PARTITIONS=PARTITIONS)
    worker = WorkerProcess(env, tmp_path, "worker")
    worker.start()
    try:
        # The worker creates its topic; its first offset lookups may meet partitions
        # that are led in the metadata but not yet on the broker.
        await wait_for(lambda: topic_exists(settings, settings.sync_topic), 60, "the topic")
        # Handlers slower than the session timeout (6 s) hold no broker back: one that
        # awaits, and one that blocks the event loop (aiokafka then finds its heartbeat
        # session expired).
        slow = slow_events(4, 7) + slow_events(1, 7, "blocks")
        await publish(settings, list(count_events(300)) + slow)
        await wait_until_at_end(settings, worker, settings.sync_topic, 120)
        # A line would come within one tick of the watch after an error.
        await asyncio.sleep(2 * WATCH_INTERVAL)
        assert worker.alive()
    finally:
        worker.stop()
    assert told(worker) == [], outage_lines(worker)


async def test_a_broker_outage_is_told_once_degraded_then_once_recovered(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    with private_broker(tmp_path) as broker:
        private = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        env = worker_env(
            cli_env,
            engine,
            CRONSTREAM_TOPIC_PARTITIONS=PARTITIONS,
            CRONSTREAM_KAFKA_BOOTSTRAP=broker.bootstrap,
        )
        worker = WorkerProcess(env, tmp_path, "worker")
        worker.start()
        try:
            await wait_for(lambda: topic_exists(private, private.sync_topic), 90, "the topic")
            await publish(private, list(count_events(200)))
            await wait_until_at_end(private, worker, private.sync_topic, 120)
            assert told(worker) == [], outage_lines(worker)  # a fresh broker is no outage
            broker.down()
            await wait_for(lambda: told(worker) == ["Kafka degraded"], 60, "the degraded line")
            broker.up()
            await publish(private, list(count_events(200, start=200)))
            await wait_until_at_end(private, worker, private.sync_topic, 120)
            await wait_for(lambda: len(told(worker)) == 2, 60, "the recovered line")
            assert worker.alive()
        finally:
            worker.stop()
    assert told(worker) == ["Kafka degraded", "Kafka recovered"], outage_lines(worker)
    degraded, recovered = outage_lines(worker)
    assert degraded["level"] == "warning" and degraded["brokers"], degraded
    if engine == "batch":  # faust's engine names the brokers only
        assert degraded["waiting"], degraded  # the partitions that wait for them
    assert int(str(recovered["held_back"])) > 0, recovered
