"""The one model of what `cronstream status`, `jobs list` and the status page show.

Collected once (collect.py), then rendered as text (text.py), HTML (page.py) or JSON
(`Status.to_json`); no renderer computes anything of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Partition:
    consumer: str
    topic: str
    partition: int
    checkpoint: int | None  # None: no checkpoint row yet; -1: a row, nothing applied
    log_start: int | None = None  # None: Kafka did not say
    log_end: int | None = None
    lag: int | None = None
    problem: str | None = None  # flagged instead of a misleading lag
    stalled_s: float | None = None  # seconds its checkpoint stood still with lag (sampler)
    committed: int | None = None  # Kafka's committed offset: asked only without checkpoint

    @property
    def notes(self) -> list[str]:
        """What the page and the tables say beside the numbers."""
        found = []
        if self.checkpoint is None:
            since = "" if self.committed is None else " (lag from Kafka's committed offset)"
            found.append(f"no checkpoint{since}")
        if self.stalled_s is not None:
            found.append(f"stalled {self.stalled_s:.0f}s")
        return found + ([self.problem] if self.problem else [])


@dataclass
class Group:
    """Another consumer (a replay, another application), in one line."""

    consumer: str
    partitions: int
    lag: int  # of the partitions whose lag is known
    problems: int


@dataclass
class Point:
    """One sample of a topic: when (Unix seconds), applied events/s since the sample
    before, and the lag of the group on that topic."""

    at: float
    applied_per_s: float
    lag: int


@dataclass
class RunMark:
    """One run in a job's strip."""

    status: str
    scheduled_for: datetime
    duration_s: float | None


@dataclass
class Summary:
    """The line at the top of the page and of `cronstream status`."""

    ready: bool | None  # None: not known (`cronstream status` runs no engine)
    not_ready: list[str]  # what /readyz names, with why
    applied_per_s: float | None  # over the last minute; None: no samples to say
    group_lag: int
    unresolved_last_hour: int
    unresolved_total: int
    leader: str | None
    jobs_failing: list[str]
    jobs_set_aside: list[str]
    stalled: int

    def line(self) -> str:
        if self.ready is None:
            ready = "readiness: ask /readyz"
        elif self.ready:
            ready = "ready"
        else:
            ready = "NOT READY (" + "; ".join(self.not_ready) + ")"
        rate = "-" if self.applied_per_s is None else f"{self.applied_per_s:.1f}"
        parts = [
            ready,
            f"applied {rate}/s (last minute)",
            f"lag {self.group_lag}" + (f" ({self.stalled} stalled)" if self.stalled else ""),
            f"unresolved dead letters {self.unresolved_last_hour} last hour, "
            f"{self.unresolved_total} total",
            f"leader {self.leader or 'none'}",
            "jobs failing: " + (", ".join(self.jobs_failing) or "none"),
            "set aside: " + (", ".join(self.jobs_set_aside) or "none"),
        ]
        return " | ".join(parts)


@dataclass
class DeadLetterCount:
    topic: str
    total: int
    last_hour: int


@dataclass
class UnresolvedReason:
    """Unresolved dead letters of one topic and reason (`cronstream dlq` re-drives them)."""

    topic: str
    reason: str
    unresolved: int
    last_seen: datetime


@dataclass
class DeadLetter:
    consumer: str
    topic: str
    partition: int
    offset: int
    dlq_topic: str
    error: str
    attempts: int
    created_at: datetime


@dataclass
class LastRun:
    status: str
    scheduled_for: datetime
    rows: int
    rejected: int
    duration_s: float | None
    error: str | None

    def describe(self) -> str:
        """One line, as `status`, `jobs list` and the page show it: status, scheduled time,
        rows emitted and rejected, duration; a failed run's error after a colon."""
        counts = f"{self.rows} rows" + (f", {self.rejected} rejected" if self.rejected else "")
        if self.duration_s is not None:
            counts += f", {self.duration_s:.1f}s"
        text = f"{self.status} {self.scheduled_for.isoformat()} ({counts})"
        return f"{text}: {self.error}" if self.error and self.status == "failed" else text


@dataclass
class JobStatus:
    name: str
    schedule: str | None  # None: an invalid cron_jobs row, which does not run
    timezone: str | None
    enabled: bool
    last_run: LastRun | None
    next_run: datetime | None  # in the job's zone; None when disabled, invalid or failing
    problem: str | None = None  # an invalid cron_jobs row, or a schedule that fails
    misfire_policy: str | None = None

    @property
    def invalid(self) -> bool:
        return self.schedule is None


@dataclass
class Status:
    collected_at: datetime
    consumer_group: str
    partitions: list[Partition] = field(default_factory=list)
    dead_letter_counts: list[DeadLetterCount] = field(default_factory=list)
    jobs: list[JobStatus] = field(default_factory=list)
    leader: str | None = None  # the leading scheduler's node, None when none leads
    dead_letters: list[DeadLetter] = field(default_factory=list)
    unresolved_by_reason: list[UnresolvedReason] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # "postgres"/"kafka": why
    jobs_error: str | None = None  # the jobs file could not be loaded
    summary: Summary | None = None
    groups: list[Group] = field(default_factory=list)  # the other consumers
    history: dict[str, list[Point]] = field(default_factory=dict)  # by topic; the sampler's
    dead_letters_per_minute: list[tuple[datetime, int]] = field(default_factory=list)
    runs: dict[str, list[RunMark]] = field(default_factory=dict)  # by job, oldest first

    @property
    def own_partitions(self) -> list[Partition]:
        return [p for p in self.partitions if p.consumer == self.consumer_group]

    def to_json(self) -> dict[str, Any]:
        """`cronstream status --json`: plain JSON types, times as ISO 8601 text."""
        return _plain(asdict(self))  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
