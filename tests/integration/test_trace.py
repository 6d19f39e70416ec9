"""Trace ids in the logs: a trace id given to `publish --trace-id` or to POST /events
shows in the line of the batch that applied the event and in the lines the handler
logs itself; a handler given events of several traces logs the batch's; every line of
a scheduler run carries the run's."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.handlers.applier import BatchApplier
from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.handlers.registry import Handler
from cronstream.kafka import clients
from cronstream.runtime.logs import trace, trace_id_var
from cronstream.runtime.retry import RetryPolicy
from tests.integration import handlers_under_test
from tests.integration.commands import run_cli
from tests.integration.handlers_under_test import HANDLER_LINE, logs_and_counts
from tests.integration.kafka_helpers import wait_for
from tests.integration.schedulers_helpers import add_job, scheduler
from tests.integration.workers import WorkerProcess, create_counts_table, worker_env


def batch_lines_with(worker: WorkerProcess, trace_id: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in worker.log_entries("batch applied")
        if trace_id in entry.get("trace_ids", [])
    ]


def handler_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    return worker.log_entries(HANDLER_LINE)


async def applied_with(worker: WorkerProcess, trace_id: str) -> None:
    await wait_for(
        lambda: bool(batch_lines_with(worker, trace_id)) or not worker.alive(),
        90,
        f"a batch line listing trace id {trace_id}",
    )
    assert worker.alive(), worker.logs()[-3000:]


def assert_traced(worker: WorkerProcess, trace_id: str) -> None:
    [batch] = batch_lines_with(worker, trace_id)
    assert batch["applied"] == 1, batch
    assert batch["trace_id"] and batch["trace_id"] != trace_id  # the batch's own
    [line] = [entry for entry in handler_lines(worker) if entry["trace_id"] == trace_id]
    assert line["events"] == 1, line


async def test_publish_trace_id_reaches_the_batch_line_and_the_handlers_own_line(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    await clients.ensure_topics(settings, [settings.sync_topic])
    trace_id = f"publish-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(worker_env(cli_env, engine), tmp_path, "worker")
    worker.start()
    try:
        args = ["publish", "--type", "logs", "--entity", "item", "--key", "1"]
        result = await asyncio.to_thread(run_cli, [*args, "--trace-id", trace_id], cli_env)
        assert result.returncode == 0, result.stderr
        await applied_with(worker, trace_id)
    finally:
        worker.stop()
    assert_traced(worker, trace_id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


TOKEN = "trace-test-token"  # POST /events is closed without one


def http(method: str, url: str, body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""  # not listening yet


async def test_post_events_trace_id_reaches_the_batch_line(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    await clients.ensure_topics(settings, [settings.sync_topic])
    trace_id = f"ingress-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = worker_env(
        cli_env, "batch", CRONSTREAM_HTTP_PORT=str(port), CRONSTREAM_INGRESS_TOKEN=TOKEN
    )
    worker = WorkerProcess(env, tmp_path, "worker")
    base = f"http://127.0.0.1:{port}"
    worker.start()
    try:
        await wait_for(
            lambda: http("GET", f"{base}/healthz")[0] == 200 or not worker.alive(),
            60,
            "the worker's HTTP surface",
        )
        event = {"type": "logs", "entity": "item", "key": "2", "payload": {}, "trace_id": trace_id}
        status, answer = await asyncio.to_thread(http, "POST", f"{base}/events", event)
        assert status == 202, answer
        await applied_with(worker, trace_id)
    finally:
        worker.stop()
    assert_traced(worker, trace_id)


def traced_record(partition: int, offset: int, trace_id: str | None) -> ConsumedRecord:
    event = Event.new(type="logs", source="test", entity="item", key=offset, payload={})
    event = event.model_copy(update={"trace_id": trace_id})  # None: an event without one
    return ConsumedRecord("t.trace", partition, offset, event.encode())


class TracesSeen(logging.Handler):
    """The trace id in context when each line was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(trace_id_var.get())


async def test_a_handler_logs_its_events_shared_trace_id_else_the_batchs(
    connection: asyncpg.Connection,
) -> None:
    def route(topic: str, event_type: str) -> Handler | None:
        return logs_and_counts

    async def sink(letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {letters}")

    applier = BatchApplier("c", route, sink, lambda t: f"{t}.dlq", RetryPolicy(1, 0.01, 0.01))
    batch = [
        traced_record(0, 0, "shared"),
        traced_record(0, 1, "shared"),
        traced_record(1, 0, "first"),
        traced_record(1, 1, "second"),
        traced_record(2, 0, None),
    ]
    handler_log = logging.getLogger(handlers_under_test.__name__)
    traces = TracesSeen()
    handler_log.addHandler(traces)
    handler_log.setLevel(logging.INFO)
    try:
        with trace("the-batch"):
            outcome = await applier.apply(connection, batch)
    finally:
        handler_log.removeHandler(traces)
        handler_log.setLevel(logging.NOTSET)
    # One handler call per partition: only the first one's events share a trace.
    assert traces.seen == ["shared", "the-batch", "the-batch"]
    assert outcome.applied == 5
    assert list(outcome.trace_ids) == ["shared", "first", "second"]


async def test_every_line_of_a_scheduler_run_carries_the_runs_trace_id(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        # Its runs fail on the job's own definition: a line the run logs, not the scanner.
        await add_job(connection, "gone", "* * * * * *", {"mode": "flag", "table": "nope"})
    finally:
        await connection.close()
    process = scheduler(worker_env(cli_env), tmp_path, "scheduler")
    process.start()
    try:
        await wait_for(
            lambda: len(process.log_entries("job gone: run")) >= 4, 60, "two runs of the job"
        )
    finally:
        process.stop()
    lines: dict[str, list[dict[str, Any]]] = {}
    for entry in process.log_entries("job gone: run"):
        lines.setdefault(entry["msg"].split()[3], []).append(entry)  # by run id
    finished = {run: found for run, found in lines.items() if len(found) == 2}
    assert len(finished) >= 2, lines
    for found in finished.values():
        started, failed = found
        assert started["msg"].endswith("started") and " failed: " in failed["msg"], found
        assert started["trace_id"] and failed.get("trace_id") == started["trace_id"], found
    assert len({found[0]["trace_id"] for found in finished.values()}) == len(finished)
