"""What a newcomer sees: a worker's own lines at the default level, and `make psql`."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cronstream.config.settings import Settings
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    ROOT,
    WorkerProcess,
    checkpoints_at_end,
    count_events,
    create_counts_table,
    publish,
    worker_env,
)

BATCH_LINE = re.compile(
    r"^info    cronstream\.streams\.batches: batch applied: (\d+) records, (\d+) applied, "
    r"(\d+) duplicates, (\d+) dead-lettered( trace_ids=.*)? trace_id=\w+$"
)
# Text lines start with the level and the logger's name.
TEXT_LINE = re.compile(r"^(debug|info|warning|error|critical) +([\w.]+): ")
OURS = ("cronstream", "tests")


@pytest.fixture
def text_worker(cli_env: dict[str, str], engine: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = worker_env(cli_env, engine, CRONSTREAM_LOG_FORMAT="text")
    del env["CRONSTREAM_LOG_LEVEL"]  # the default, as `make run` has it
    process = WorkerProcess(env, tmp_path, "worker")
    yield process
    process.stop()


async def test_default_level_shows_our_lines_with_counts_not_the_libraries(
    settings: Settings, database_url: str, text_worker: WorkerProcess
) -> None:
    await create_counts_table(database_url)
    text_worker.start()
    ids = await publish(settings, list(count_events(120)))

    async def applied_and_logged() -> bool:
        assert text_worker.alive(), text_worker.logs()[-3000:]
        applied = sum(
            int(m[2]) for m in map(BATCH_LINE.match, text_worker.logs().splitlines()) if m
        )
        return applied == len(ids) and await checkpoints_at_end(settings, settings.sync_topic)

    await wait_for(applied_and_logged, 90, "every event applied and logged with counts")
    code, _ = text_worker.terminate()
    assert code == 0
    lines = text_worker.logs().splitlines()

    loggers = {m[2] for m in map(TEXT_LINE.match, lines) if m and m[1] in ("debug", "info")}
    assert loggers, lines[:20]
    assert {name for name in loggers if not name.startswith(OURS)} == set(), lines[:40]
    assert not any("GroupCoordinatorNotAvailableError" in line for line in lines)


async def test_debug_brings_the_library_lines_back(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = worker_env(cli_env, "batch", CRONSTREAM_LOG_FORMAT="text", CRONSTREAM_LOG_LEVEL="DEBUG")
    worker = WorkerProcess(env, tmp_path, "worker")
    worker.start()
    try:

        async def aiokafka_talks() -> bool:
            assert worker.alive(), worker.logs()[-3000:]
            return "debug   aiokafka." in worker.logs()

        await wait_for(aiokafka_talks, 60, "aiokafka's debug lines")
    finally:
        worker.stop()


def test_make_psql_runs_a_statement_and_never_prints_the_password(database_url: str) -> None:
    password = urlsplit(database_url).password
    assert password
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONSTREAM_")}
    result = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "psql",
            "SQL=SELECT 'it' || 'works'",
        ],
        env=env | {"CRONSTREAM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "itworks" in result.stdout
    assert password not in result.stdout + result.stderr
