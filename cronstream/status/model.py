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

    def to_json(self) -> dict[str, Any]:
        """`cronstream status --json`: plain JSON types, times as ISO 8601 text."""
        return _plain(asdict(self))  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
