"""The status page in a real browser: Debian's chromium, headless, loads / from a running
`cronstream run` and the rendered page shows the partitions and the jobs.

`make test` installs chromium (scripts/test-tools.sh); this test installs nothing. Without
it the test is skipped, or fails under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
from pathlib import Path

import asyncpg
import pytest

from cronstream.config.settings import Settings
from tests.integration.http_helpers import free_port, http_env, wait_ready
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import WorkerProcess

HOW_TO = "chromium not found: run 'make test' as root, or 'sudo apt-get install chromium'"
JOBS = """
[jobs.page_customers]
schedule = "*/5 * * * * *"
[jobs.page_customers.scan]
mode = "flag"
table = "customers"
entity = "customer"
"""
CUSTOMERS = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    needs_sync boolean NOT NULL DEFAULT true
);
INSERT INTO customers (id, name) SELECT i, 'c' || i FROM generate_series(1, 20) AS i;
"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(HOW_TO, pytrace=False)
        pytest.skip(HOW_TO)
    return found


async def browse(browser: str, profile: Path, *args: str) -> str:
    """Run headless chromium (as root it needs --no-sandbox); its stdout."""
    process = await asyncio.create_subprocess_exec(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    # Debian's wrapper prints a harmless "[: ...: unexpected operator" on stderr.
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


async def test_status_page_in_a_real_browser(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    browser = chromium()
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CUSTOMERS)
    finally:
        await connection.close()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS)
    port = free_port()
    process = WorkerProcess(
        http_env(cli_env, port), tmp_path, "run", args=["run", "--jobs-file", str(jobs_file)]
    )
    url = f"http://127.0.0.1:{port}/"
    process.start()
    try:
        await wait_ready(url.rstrip("/"), process)

        async def scanned() -> bool:
            connection = await asyncpg.connect(database_url)
            try:
                return bool(
                    await connection.fetchval(
                        "SELECT count(*) FROM entity_projection WHERE entity = 'customer'"
                    )
                    == 20
                )
            finally:
                await connection.close()

        await wait_for(scanned, 90, "the job's rows to be scanned and applied")
        dom = await browse(browser, tmp_path / "profile", "--dump-dom", url)
        screenshot = tmp_path / "status.png"
        await browse(
            browser,
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=1280,900",
            url,
        )
    finally:
        process.stop()

    assert "<title>cronstream status</title>" in dom
    partitions = re.search(r'<table id="partitions">(.*?)</table>', dom, re.S)
    assert partitions is not None, dom[:3000]
    rows = re.findall(r"<tr>(.*?)</tr>", partitions.group(1), re.S)[1:]  # after the header
    assert len(rows) == settings.topic_partitions
    assert all(settings.sync_topic in row for row in rows)
    lags = [int(cells[5]) for cells in (re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows)]
    assert lags == [0] * settings.topic_partitions, rows
    jobs = re.search(r'<table id="jobs">(.*?)</table>', dom, re.S)
    assert jobs is not None
    assert "page_customers" in jobs.group(1)
    assert re.search(r"(succeeded|running) \d{4}-", jobs.group(1)), jobs.group(1)
    assert "scheduler leader: none leads" not in dom

    assert screenshot.is_file()
    assert png_size(screenshot) == (1280, 900)
    assert screenshot.stat().st_size > 10_000, "a blank page compresses to far less"
