"""Shared pieces of the benchmarks: the workload, fresh databases, CPU and rate accounting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.pg import migrate

PAYLOAD_FILLER = "x" * 150  # with the other fields, a payload of about 200 bytes
# The wide payload: 15 text fields of 125 characters, varied (hex) so no two payloads are
# alike, about 2 KB as JSON.
WIDE_TEXTS = [(uuid.UUID(int=i * 7919).hex * 4)[:125] for i in range(64)]


def payload(i: int, wide: bool) -> dict[str, object]:
    if not wide:
        return {"i": i, "name": f"item-{i}", "note": PAYLOAD_FILLER}
    return {"i": i, "name": f"item-{i}"} | {f"f{j:02}": WIDE_TEXTS[(i + j) % 64] for j in range(15)}


def workload(n: int, keys: int, wide: bool = False) -> Iterator[Event]:
    """`n` sync_required events over `keys` distinct keys, increasing versions per key."""
    for i in range(n):
        yield Event.new(
            type="sync_required",
            source="bench",
            entity="item",
            key=i % keys,
            version=i,
            payload=payload(i, wide),
        )


def records(events: Iterable[Event]) -> Iterator[tuple[bytes, bytes]]:
    """Kafka (key, value) pairs of `events`, as cronstream publishes them."""
    return ((event.kafka_key, event.encode()) for event in events)


@dataclass
class Arm:
    """One measured arm: how many events, in how long, at what CPU cost."""

    events: int
    elapsed: float
    cpu: float
    peak_rss_mb: float | None = None  # of the measured processes, where there are some

    def as_json(self) -> dict[str, float]:
        shown = {
            "events_per_s": round(self.events / self.elapsed) if self.elapsed else 0,
            "elapsed_s": round(self.elapsed, 3),
            "cpu_s": round(self.cpu, 3),
            "cpu_us_per_event": round(self.cpu / self.events * 1e6, 1) if self.events else 0,
        }
        if self.peak_rss_mb is not None:
            shown["peak_rss_mb"] = self.peak_rss_mb
        return shown


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a worker with --processes has children)."""
    found, index = [pid], 0
    while index < len(found):
        for task in Path(f"/proc/{found[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # ended meanwhile
                found += [int(child) for child in task.read_text().split()]
        index += 1
    return found


def peak_rss_mb(pids: Iterable[int]) -> float:
    """The sum of each process's peak resident set (VmHWM), in MiB, read before it ends."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


class Stopwatch:
    """Wall and CPU time of this process from `start` (or creation) to `stop`."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.began, self.cpu = time.perf_counter(), own_cpu()

    def stop(self, events: int) -> Arm:
        return Arm(events, time.perf_counter() - self.began, own_cpu() - self.cpu)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@asynccontextmanager
async def fresh_database(settings: Settings) -> AsyncIterator[str]:
    """A new migrated database for one arm, so no arm upserts into another's rows."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(settings.database_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = with_database(settings.database_dsn, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate.migrate(connection, settings.migrations_dir)
    finally:
        await connection.close()
    try:
        yield url
    finally:
        await _drop(settings, name)


async def _drop(settings: Settings, name: str) -> None:
    # An autovacuum worker (after a 200,000-row arm) may still be in the database, and
    # FORCE may not end it without pg_signal_backend: wait for it instead.
    admin = await asyncpg.connect(settings.database_dsn)
    try:
        for _ in range(120):
            try:
                await admin.execute(f"DROP DATABASE {name}")
                return
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.5)
        print(f"bench: database {name} still in use; left in place", file=sys.stderr)
    finally:
        await admin.close()


def ratio(ours: Arm, theirs: Arm) -> float:
    """Our events/s over theirs: above 1 means ours is faster."""
    if not (ours.elapsed and theirs.events):
        return 0.0
    return round((ours.events / ours.elapsed) / (theirs.events / theirs.elapsed), 3)


def dump(result: dict[str, object]) -> str:
    return json.dumps(result, separators=(", ", ": "))
