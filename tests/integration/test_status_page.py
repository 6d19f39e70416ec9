"""The status page in a real browser: Debian's chromium, headless, loads / from a running
`cronstream run` whose group has a stalled partition, a partition never checkpointed, a
dead letter and a failing job, and the rendered page shows them at a glance.

`make test` installs chromium (scripts/test-tools.sh); this test installs nothing. Without
it the test is skipped, or fails under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from tests.integration.http_helpers import free_port, get, http_env, wait_ready
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    HANDLERS,
    WorkerProcess,
    checkpoints,
    count_events,
    create_counts_table,
)

HOW_TO = "chromium not found: run 'make test' as root, or 'sudo apt-get install chromium'"
JOBS = """
[jobs.page_customers]
schedule = "*/5 * * * * *"
[jobs.page_customers.scan]
mode = "flag"
table = "customers"
entity = "customer"

[jobs.page_broken]
schedule = "*/5 * * * * *"
[jobs.page_broken.scan]
mode = "flag"
table = "no_such_table"
entity = "customer"
"""
CUSTOMERS = """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    needs_sync boolean NOT NULL DEFAULT true
);
"""  # empty: its scans succeed and send nothing, so partition 5 gets no record early
PARTITIONS = 6
# Another member of the worker's group that takes partitions and never applies them: a
# stuck worker. Its client id sorts after the worker's ("aiokafka-..."), so aiokafka's
# round-robin assignor gives it the odd partitions.
STUCK_CLIENT = "zz-stuck-worker"
STUCK = {1, 3, 5}


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


async def send_to(settings: Settings, records: dict[int, list[bytes]]) -> None:
    """Each value to its own partition, acknowledged."""
    producer: AIOKafkaProducer = clients.producer(settings)
    async with clients.started(producer):
        for partition, values in records.items():
            for value in values:
                await (await producer.send(settings.sync_topic, value=value, partition=partition))


def encoded(n: int, start: int) -> list[bytes]:
    return [event.encode() for event in count_events(n, start=start)]


def section(dom: str, element_id: str) -> str:
    found = re.search(rf'<(table|p|svg) [^>]*id="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert found is not None, f"no #{element_id} in {dom[:3000]}"
    return found.group(0)


async def test_status_page_in_a_real_browser(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    browser = chromium()
    settings = settings.model_copy(update={"topic_partitions": PARTITIONS})
    await create_counts_table(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CUSTOMERS)
    finally:
        await connection.close()
    await clients.ensure_topics(settings, [settings.sync_topic])
    # Every partition but the last gets records the worker applies while alone.
    await send_to(settings, {p: encoded(5, 10 * p) for p in range(PARTITIONS - 1)})
    await send_to(settings, {0: [b"not json"]})  # dead-lettered
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(JOBS)
    port = free_port()
    env = http_env(
        cli_env,
        port,
        CRONSTREAM_TOPIC_PARTITIONS=str(PARTITIONS),
        CRONSTREAM_STALL_SECONDS="3",
        CRONSTREAM_STATUS_SAMPLE_SECONDS="1",
    )
    args = ["run", "--jobs-file", str(jobs_file), "--handlers", HANDLERS]
    process = WorkerProcess(env, tmp_path, "run", args=args)
    base = f"http://127.0.0.1:{port}"
    stuck = AIOKafkaConsumer(
        settings.sync_topic,
        group_id=settings.consumer_group,
        client_id=STUCK_CLIENT,
        enable_auto_commit=False,
        **clients.connection_options(settings),
    )
    process.start()
    try:
        await wait_ready(base, process)

        async def applied_alone() -> bool:
            return set(await checkpoints(settings, settings.sync_topic)) == set(
                range(PARTITIONS - 1)
            )

        await wait_for(applied_alone, 90, "the worker to apply the first records")
        await stuck.start()

        held: list[set[int]] = []

        async def stuck_holds_its_share() -> bool:
            await stuck.getmany(timeout_ms=200)  # polls, never applies nor commits
            held.append({tp.partition for tp in stuck.assignment()})
            return held[-1] == STUCK

        try:
            await wait_for(stuck_holds_its_share, 90, f"the stuck member to hold {STUCK}")
        except AssertionError as error:
            raise AssertionError(f"{error}; it holds {held[-1:]}") from None
        # Partition 3 stalls at its checkpoint; 5 never had one.
        await send_to(settings, {3: encoded(4, 100), 5: encoded(4, 200), 0: encoded(3, 300)})

        async def all_shown() -> bool:
            assert process.alive(), process.logs()[-3000:]
            code, body = await get(f"{base}/status.json")
            assert code == 200, body[:2000]
            status = json.loads(body)
            own = {
                p["partition"]: p
                for p in status["partitions"]
                if p["consumer"] == settings.consumer_group
            }
            runs = status["runs"].get("page_broken", [])
            history = status["history"].get(settings.sync_topic, [])
            return (
                own[3]["stalled_s"] is not None
                and own[5]["stalled_s"] is not None
                and own[0]["lag"] == 0
                and any(run["status"] == "failed" for run in runs)
                and status["summary"]["leader"] is not None
                and len(history) >= 3
            )

        await wait_for(all_shown, 90, "the stall, the failed run and samples on /status.json")
        dom = await browse(browser, tmp_path / "profile", "--dump-dom", f"{base}/")
        screenshot = tmp_path / "status.png"
        await browse(
            browser,
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=1280,1400",
            f"{base}/",
        )
        _, metrics = await get(f"{base}/metrics")
    finally:
        await stuck.stop()
        process.stop()

    assert "<title>cronstream status</title>" in dom
    assert '<a href="/status.json">' in dom
    summary = section(dom, "summary")
    assert "lag 8 (2 stalled)" in summary, summary
    assert "unresolved dead letters 1 last hour, 1 total" in summary, summary
    assert "jobs failing: page_broken" in summary, summary
    assert "leader none" not in summary and "applied -/s" not in summary, summary

    partitions = section(dom, "partitions")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", partitions, re.S)[1:]  # after the header
    assert len(rows) == PARTITIONS, rows
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    by_partition = {int(row[1]): row for row in cells}
    assert settings.sync_topic == by_partition[3][0]
    assert "stalled" in by_partition[3][5] and by_partition[3][4] == "4", by_partition[3]
    assert "no checkpoint" in by_partition[5][5] and by_partition[5][4] == "4", by_partition[5]
    assert "stalled" not in by_partition[1][5] and by_partition[1][4] == "0", by_partition[1]
    assert re.search(r'<tr class="stalled">\s*<td>[^<]*</td><td class="n">3</td>', partitions)

    plots = re.findall(r'<svg class="plot" id="([^"]+)"(.*?)</svg>', dom, re.S)
    assert {name for name, _ in plots} == {"applied-0", "lag-0", "dead-letters-per-minute"}
    for name, body in plots:
        if name == "dead-letters-per-minute":
            assert body.count('<rect class="data"') >= 1, body
        else:
            points = re.search(r'data-points="(\d+)"', body)
            assert points is not None and int(points.group(1)) >= 2, body
    strips = re.findall(r'<svg class="strip" id="runs-\d+"(.*?)</svg>', dom, re.S)
    assert len(strips) == 2 and all('<rect class="data' in strip for strip in strips)
    assert "run-failed" in "".join(strips) and "<title>failed " in "".join(strips)
    jobs = section(dom, "jobs")
    assert "page_customers" in jobs and "page_broken" in jobs

    stalled = re.findall(
        r'cronstream_partition_stalled\{partition="(\d)",topic="[^"]+"\} 1.0', metrics
    )
    assert stalled == ["3", "5"] or sorted(stalled) == ["3", "5"], metrics[-2000:]
    assert process.logs().count(f"partition {settings.sync_topic}[3] stalled") == 1

    assert screenshot.is_file()
    assert png_size(screenshot) == (1280, 1400)
    assert screenshot.stat().st_size > 10_000, "a blank page compresses to far less"
    keep = os.environ.get("CRONSTREAM_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, Path(keep) / "status-page.png")
