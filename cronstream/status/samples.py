"""An hour of samples of the consumer group's partitions, kept in memory, and the
partitions that stalled.

Each sample is, per partition, the Postgres checkpoint against Kafka's log start and
end (sampler.py takes them). Per topic only two numbers are kept (records applied so
far and the lag), so an hour of samples every 5 s of 300 partitions is a few hundred
kilobytes. A partition is stalled when it has lag and its checkpoint has not moved for
`stall_seconds`; a partition without a checkpoint counts as one standing still.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Literal

from cronstream.status.model import Point

KEEP_SECONDS = 3600.0
RATE_WINDOW = 60.0  # seconds of "events applied per second" in the summary

Key = tuple[str, int]  # topic, partition


@dataclass(frozen=True)
class Position:
    """One partition at one sample."""

    checkpoint: int | None  # None: no checkpoint row
    log_start: int
    log_end: int
    committed: int | None = None  # Kafka's, where there is no checkpoint: the worker starts there

    @property
    def applied_to(self) -> int:
        """The next offset to apply: what the group has consumed of the log so far."""
        if self.checkpoint is not None:
            following = self.checkpoint + 1
        else:
            following = self.log_start if self.committed is None else self.committed
        return min(max(following, self.log_start), self.log_end)

    @property
    def lag(self) -> int:
        return self.log_end - self.applied_to


@dataclass(frozen=True)
class Change:
    """A partition that stalled, or moved again after it had."""

    key: Key
    what: Literal["stalled", "moved"]
    seconds: float  # how long it had stood still
    checkpoint: int | None
    lag: int


@dataclass
class _Still:
    checkpoint: int | None
    since: float  # when its checkpoint last moved, or it last had no lag
    stalled: bool = False


@dataclass(frozen=True)
class _Sample:
    at: float
    by_topic: dict[str, tuple[int, int]]  # topic: (applied offsets summed, lag summed)


class Samples:
    """The ring of samples (bounded: `KEEP_SECONDS` / `interval` of them) and the stalls."""

    def __init__(self, interval: float, stall_seconds: float) -> None:
        self.interval = interval
        self.stall_seconds = stall_seconds
        self.ring: deque[_Sample] = deque(maxlen=max(2, int(KEEP_SECONDS / interval) + 1))
        self.still: dict[Key, _Still] = {}

    def add(self, at: float, positions: dict[Key, Position]) -> list[Change]:
        """Record the sample taken at `at` (Unix seconds); the stalls it begins or ends."""
        by_topic: dict[str, tuple[int, int]] = {}
        for (topic, _), position in positions.items():
            applied, lag = by_topic.get(topic, (0, 0))
            by_topic[topic] = (applied + position.applied_to, lag + position.lag)
        self.ring.append(_Sample(at, by_topic))
        return self._watch(at, positions)

    def _watch(self, at: float, positions: dict[Key, Position]) -> list[Change]:
        changes: list[Change] = []
        for key, position in positions.items():
            still = self.still.get(key)
            if still is None or still.checkpoint != position.checkpoint or position.lag == 0:
                if still is not None and still.stalled:
                    changes.append(
                        Change(key, "moved", at - still.since, position.checkpoint, position.lag)
                    )
                self.still[key] = _Still(position.checkpoint, at)
            elif not still.stalled and at - still.since >= self.stall_seconds:
                still.stalled = True
                changes.append(
                    Change(key, "stalled", at - still.since, position.checkpoint, position.lag)
                )
        for key in [key for key in self.still if key not in positions]:  # topic gone
            gone = self.still.pop(key)
            if gone.stalled:
                changes.append(Change(key, "moved", at - gone.since, None, 0))
        return changes

    def stalled(self) -> dict[Key, float]:
        """Each stalled partition and how long it has stood still, at the last sample."""
        if not self.ring:
            return {}
        last = self.ring[-1].at
        return {key: last - s.since for key, s in self.still.items() if s.stalled}

    def history(self) -> dict[str, list[Point]]:
        """Per topic, a point per sample after the first: applied events/s and lag."""
        found: dict[str, list[Point]] = {}
        samples = list(self.ring)
        for before, sample in itertools.pairwise(samples):
            elapsed = sample.at - before.at
            for topic, (applied, lag) in sample.by_topic.items():
                earlier = before.by_topic.get(topic, (applied, lag))[0]
                rate = max(applied - earlier, 0) / elapsed if elapsed > 0 else 0.0
                found.setdefault(topic, []).append(Point(sample.at, rate, lag))
        return found

    def applied_per_s(self) -> float | None:
        """Events applied per second over the last minute, every topic; None before two
        samples."""
        if len(self.ring) < 2:
            return None
        last = self.ring[-1]
        first = next(s for s in self.ring if s.at >= last.at - RATE_WINDOW - self.interval / 2)
        if first is last:
            first = self.ring[-2]
        applied = 0
        for topic, (total, _) in last.by_topic.items():
            applied += max(total - first.by_topic.get(topic, (total, 0))[0], 0)
        return applied / (last.at - first.at) if last.at > first.at else 0.0
