"""Shared pieces of the benchmarks: settings, a fresh topic, timing, JSON output."""

from __future__ import annotations

import json
import os
import resource
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cronstream.envelope import Event
from cronstream.settings import Settings


def settings(**overrides: object) -> Settings:
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    return Settings(sync_topic=topic, consumer_group=f"{topic}.group", **overrides)  # type: ignore[arg-type]


def events(n: int) -> list[Event]:
    return [
        Event.new(
            type="sync_required",
            source="bench",
            entity="item",
            key=i % 1000,
            version=i,
            payload={"i": i, "name": f"item-{i}"},
        )
        for i in range(n)
    ]


@dataclass
class Timing:
    elapsed: float = 0.0
    cpu: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def timed() -> Iterator[Timing]:
    timing = Timing()
    began, cpu = time.perf_counter(), _cpu()
    yield timing
    timing.elapsed = time.perf_counter() - began
    timing.cpu = _cpu() - cpu


def report(name: str, n: int, baseline: Timing, ours: Timing) -> None:
    """One JSON line: rates, elapsed and CPU seconds, and ours relative to raw aiokafka."""
    print(
        json.dumps(
            {
                "benchmark": name,
                "events": n,
                "raw_aiokafka": {
                    "rate": round(n / baseline.elapsed),
                    "elapsed_s": round(baseline.elapsed, 3),
                    "cpu_s": round(baseline.cpu, 3),
                },
                "cronstream": {
                    "rate": round(n / ours.elapsed),
                    "elapsed_s": round(ours.elapsed, 3),
                    "cpu_s": round(ours.cpu, 3),
                    **ours.extra,
                },
                "ratio": round(baseline.elapsed / ours.elapsed, 3),
                "cpus": os.cpu_count(),
            }
        )
    )
