"""The HTTP surface's limits against a real worker: slow headers, idle connections and
bodies that never end are closed at their deadlines, connections and ingress bodies are
capped, the worker's memory stays bounded, and it keeps applying events meanwhile
(cronstream/web/limits.py, cronstream/web/app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cronstream.config.settings import Settings
from tests.integration.http_helpers import free_port, http_env, wait_ready
from tests.integration.kafka_helpers import wait_for
from tests.integration.workers import (
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    count_events,
    create_counts_table,
    publish,
)

TOKEN = "limits-token"
# The keep-alive timeout is longer than the header deadline plus the margin, so a
# connection closed within that margin was closed by the header deadline.
HEADER_S, BODY_S, KEEPALIVE_S = 2.0, 2.0, 6.0
MARGIN_S = 2.5  # the server's timers and a loaded machine
EARLY_S = 0.5  # timers may fire this much before their deadline, as seen from here
LINGER_S = 2.0  # cronstream/web/app.py LINGER_SECONDS
CONNECTIONS = 40
BODY = 4 * 1_048_576  # the default CRONSTREAM_INGRESS_MAX_BYTES
HALF_BODIES = 20
# 8 bodies read at once (CRONSTREAM_HTTP_MAX_INGRESS) of 4 MiB: 33 MiB measured; the
# 20 all read at once grew a worker by 89 MiB.
RSS_BOUND_MIB = 48


def rss_mib(process: WorkerProcess) -> float:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def sample_rss(process: WorkerProcess, samples: list[float]) -> None:
    """The worker's RSS every 0.1 s into `samples`, for at most a minute."""
    for _ in range(600):
        samples.append(rss_mib(process))
        await asyncio.sleep(0.1)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_within(reader: asyncio.StreamReader, seconds: float, what: str) -> bytes:
    """What the server sent until it closed the connection; fails past `seconds`."""
    received = b""
    began = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    received += chunk
    except TimeoutError:
        raise AssertionError(f"{what}: still open after {seconds}s") from None
    closed.append(time.monotonic() - began)
    return received


closed: list[float] = []  # how long each `closed_within` waited, for the report


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send `data` a byte a second, until the server closes (bounded by its length)."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            if reader.at_eof():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)


def request_head(port: int, length: int) -> bytes:
    return (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def half_body(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST /events whose body stops one byte short of its Content-Length."""
    reader, writer = await connect(port)
    writer.write(request_head(port, BODY) + b" " * (BODY - 1))
    with contextlib.suppress(ConnectionError):  # a refused one may be closed mid-send
        await writer.drain()
    return reader, writer


@pytest.fixture
async def limited(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[int, WorkerProcess]]:
    """A worker with short deadlines, a token and a low connection cap; ready."""
    await create_counts_table(database_url)
    port = free_port()
    env = http_env(
        cli_env,
        port,
        CRONSTREAM_INGRESS_TOKEN=TOKEN,
        CRONSTREAM_HTTP_HEADER_TIMEOUT=str(HEADER_S),
        CRONSTREAM_HTTP_BODY_TIMEOUT=str(BODY_S),
        CRONSTREAM_HTTP_KEEPALIVE_TIMEOUT=str(KEEPALIVE_S),
        CRONSTREAM_HTTP_MAX_CONNECTIONS=str(CONNECTIONS),
    )
    process = WorkerProcess(env, tmp_path, "worker")
    process.start()
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process)
        yield port, process
    finally:
        process.stop()


async def test_slow_idle_and_unfinished_requests_are_closed_at_their_deadlines(
    limited: tuple[int, WorkerProcess],
) -> None:
    port, process = limited
    closed.clear()
    slow_reader, slow_writer = await connect(port)
    sending = asyncio.create_task(trickle(slow_reader, slow_writer, request_head(port, 2)))
    idle_reader, idle_writer = await connect(port)
    await closed_within(slow_reader, HEADER_S + MARGIN_S, "headers at a byte a second")
    await closed_within(idle_reader, HEADER_S + MARGIN_S, "a connection sending nothing")
    assert closed[0] >= HEADER_S - EARLY_S, closed  # not before its deadline either
    await sending

    # Kept alive after an answer, then idle: closed at the keep-alive timeout.
    kept_reader, kept_writer = await connect(port)
    kept_writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert (await kept_reader.readuntil(b"ok\n")).startswith(b"HTTP/1.1 200")
    await closed_within(kept_reader, KEEPALIVE_S + MARGIN_S, "an idle kept-alive connection")
    assert closed[2] >= KEEPALIVE_S - EARLY_S, closed

    # A body one byte short: 408 at the body deadline, then closed after the linger.
    reader, writer = await half_body(port)
    answer = await closed_within(reader, BODY_S + LINGER_S + MARGIN_S, "a body never ended")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"CRONSTREAM_HTTP_BODY_TIMEOUT" in answer
    print(f"closed after {[round(seconds, 1) for seconds in closed]} s")
    for opened in (slow_writer, idle_writer, kept_writer, writer):
        opened.close()
    assert process.alive()


async def test_connections_are_capped_and_memory_stays_bounded_while_events_apply(
    limited: tuple[int, WorkerProcess], settings: Settings, database_url: str
) -> None:
    port, process = limited
    # Over the cap: answered 503 and closed at once.
    idle = [await connect(port) for _ in range(CONNECTIONS)]
    reader, writer = await connect(port)
    refused = await closed_within(reader, 5, "a connection over the cap")
    assert refused.startswith(b"HTTP/1.1 503"), refused
    for _, opened in [*idle, (reader, writer)]:
        opened.close()

    async def below_the_cap() -> bool:  # the idle ones are closed at their deadline
        probe_reader, probe_writer = await connect(port)
        probe_writer.write(f"GET /healthz HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        head = b""
        with contextlib.suppress(ConnectionError):
            head = await asyncio.wait_for(probe_reader.read(12), 5)
        probe_writer.close()
        return head == b"HTTP/1.1 200"

    await wait_for(below_the_cap, HEADER_S + MARGIN_S + 5, "connections under the cap")

    # Half bodies of the largest size, while events flow through Kafka.
    baseline = rss_mib(process)
    samples = [baseline]
    sampling = asyncio.create_task(sample_rss(process, samples))
    events = list(count_events(300))
    flowing = asyncio.create_task(publish(settings, events, chunk=30, pause=0.2))
    unfinished = [await half_body(port) for _ in range(HALF_BODIES)]
    answers = [
        await closed_within(r, BODY_S + LINGER_S + MARGIN_S, "a half body") for r, _ in unfinished
    ]
    sampling.cancel()
    peak = max(samples)
    statuses = sorted(answer[:12].decode() for answer in answers if answer)
    assert statuses.count("HTTP/1.1 408") <= 8, statuses  # CRONSTREAM_HTTP_MAX_INGRESS
    assert "HTTP/1.1 503" in statuses, statuses  # the rest: busy, retry later
    assert peak - baseline < RSS_BOUND_MIB, (baseline, peak)
    for _, opened in unfinished:
        opened.close()

    ids = await flowing

    async def all_applied() -> bool:
        assert process.alive(), process.logs()[-3000:]
        return len(await applied_counts(database_url)) >= len(ids)

    await wait_for(all_applied, 60, "the events sent meanwhile to be applied")
    assert_exactly_once(await applied_counts(database_url), ids)
    print(f"RSS {baseline:.0f} MiB -> peak {peak:.0f} MiB; answers {statuses}")
