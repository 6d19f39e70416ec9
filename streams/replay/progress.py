"""What a replay has done so far, and how it ended."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import ConsumedRecord
from cronstream.streams.replay.plan import Plan

ReplayOutcome = Literal["succeeded", "failed", "interrupted"]
"""How a replay ended, as its row in `replays` says (`running` until then)."""


@dataclass
class Progress:
    """What a replay has done so far; `stopped` is each partition's last settled offset."""

    total: int
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    stopped: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    status: ReplayOutcome = "succeeded"
    error: str | None = None
    replay_id: int | None = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def counters(self) -> tuple[int, int, int, int]:
        """Records read, applied, duplicates, dead-lettered: as the replays row has them."""
        return self.records, self.applied, self.duplicates, self.dead_lettered

    def add(self, records: Sequence[ConsumedRecord], outcome: Outcome) -> None:
        self.records += len(records)
        self.applied += outcome.applied
        self.duplicates += outcome.duplicates
        self.dead_lettered += len(outcome.dead_letters)
        for record in records:
            self.stopped[record.partition] = max(
                self.stopped.get(record.partition, -1), record.offset
            )

    def summary(self, topic: str) -> str:
        return (
            f"replay of {topic} {self.status}: {self.records} records read, {self.applied} "
            f"applied, {self.duplicates} duplicates, {self.dead_lettered} dead-lettered "
            f"in {self.seconds:.1f}s ({self.rate:.0f} records/s)"
        )

    def unfinished(self, plan: Plan) -> list[tuple[int, int, int]]:
        """(partition, next offset, last offset) of each partition not replayed to its end."""
        left = []
        for p in plan.partitions:
            reached = self.stopped.get(p.partition, p.offsets.start - 1)
            if p.offsets and reached < p.offsets.stop - 1:
                left.append((p.partition, reached + 1, p.offsets.stop - 1))
        return left
