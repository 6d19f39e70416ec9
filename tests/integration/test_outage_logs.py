"""A broker outage reads as two lines of cronstream's, not hundreds of aiokafka's.

The local broker is restarted under a running worker (batch engine): the worker says
once that Kafka is degraded and once that it recovered, aiokafka's per-attempt
connection and fetch errors stay out of the log, and every event is applied once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from cronstream.settings import Settings
from tests.integration.kafka_helpers import wait_for
from tests.integration.test_exactly_once import (
    env_for,
    local_kafka,
    service_script,
    wait_for_progress,
    wait_for_the_end,
)
from tests.integration.workers import (
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    count_events,
    create_counts_table,
    publish,
)

LIBRARIES = ("aiokafka", "kafka", "faust", "mode")
# A line or two may still get through (an error aiokafka raises once, not per attempt).
AT_MOST_LIBRARY_ERRORS = 3


def entries(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def library_lines(found: list[dict[str, Any]], level: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in found
        if entry["level"] == level and entry["logger"].split(".")[0] in LIBRARIES
    ]


async def test_a_broker_restart_logs_degraded_once_and_recovered_once(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    if not local_kafka(settings):
        pytest.skip("restarting the broker needs the local Kafka of scripts/kafka.sh")
    await create_counts_table(database_url)
    worker = WorkerProcess(env_for(cli_env, "batch"), tmp_path, "worker")
    before = list(count_events(500))
    after = list(count_events(500, start=500))
    worker.start()
    try:
        ids = await publish(settings, before, chunk=50, pause=0.05)
        await wait_for_progress(database_url, 0, 60)
        await asyncio.to_thread(service_script, "kafka", "down")
        await asyncio.to_thread(service_script, "kafka", "up")
        ids += await publish(settings, after, chunk=50, pause=0.05)
        await wait_for_the_end(settings, [worker], 180)
        await wait_for(lambda: "Kafka recovered" in worker.logs(), 60, "the recovered line")
        assert worker.alive(), "the worker must survive a broker restart"
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), ids)

    found = entries(worker.logs())
    errors, warnings = library_lines(found, "error"), library_lines(found, "warning")
    print(f"\nlibrary lines during the restart: {len(errors)} ERROR, {len(warnings)} WARNING")
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
    assert len(errors) <= AT_MOST_LIBRARY_ERRORS, [entry["msg"] for entry in errors]
