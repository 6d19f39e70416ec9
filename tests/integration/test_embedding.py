"""A program of one's own running a worker through `cronstream.run_worker`, with handlers
registered in code: applied exactly once, and SIGTERM ends the call and the program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cronstream.config.settings import Settings
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    ROOT,
    applied_counts,
    assert_exactly_once,
    checkpoints_at_end,
    count_events,
    create_counts_table,
    publish,
    worker_env,
)

# As the README's "Embedding" section has it: settings in code, the rest from CRONSTREAM_*.
PROGRAM = """
import logging

from cronstream import Registry, Settings, run_worker
from tests.integration.handlers_under_test import count

logging.basicConfig(level=logging.INFO)
registry = Registry()
registry.register("count", count)
run_worker(Settings(batch_size=50), registry=registry)
print("run_worker returned", flush=True)
"""


def start(program: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The program in a process of its own, from the checkout (for the tests' handlers)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, str(program)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


async def test_run_worker_applies_a_registry_built_in_code(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    program = tmp_path / "myapp.py"
    program.write_text(PROGRAM)
    log_path = tmp_path / "myapp.log"
    process = start(program, worker_env(cli_env), log_path)
    try:
        ids = await publish(settings, list(count_events(300)))

        async def applied() -> bool:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            return await checkpoints_at_end(settings, settings.sync_topic)

        await wait_for(applied, 90, "the embedded worker to apply everything")
        assert_exactly_once(await applied_counts(database_url), ids)
        process.terminate()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    output = log_path.read_text(errors="replace")
    assert "run_worker returned" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
