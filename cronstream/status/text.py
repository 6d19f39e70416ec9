"""The status model as rich tables on a terminal: `cronstream status` and `jobs list`.

Every cell is a Text, never markup: topic names, job names and run errors come from
outside, and an unbalanced closing tag in one would end the command with a traceback.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cronstream.status.model import JobStatus, LastRun, Status

WIDTH = 200  # wide enough that a run's error is not folded into many lines


def print_status(status: Status) -> None:
    """The summary line, partitions, dead letters per topic, and jobs with the leader."""
    console = Console(width=WIDTH)
    if status.summary is not None:
        console.print(Text(status.summary.line()))
    partitions = Table(
        "consumer",
        "topic",
        "partition",
        "checkpoint",
        "log end",
        "lag",
        "note",
        title="Partitions",
    )
    for p in status.partitions:
        partitions.add_row(
            *_texts(
                p.consumer,
                p.topic,
                p.partition,
                _or_dash(p.checkpoint),
                _or_dash(p.log_end),
                _or_dash(p.lag),
                ", ".join(p.notes),
            )
        )
    console.print(partitions)
    dead = Table("topic", "dead letters", "last hour", title="Dead letters")
    for count in status.dead_letter_counts:
        dead.add_row(*_texts(count.topic, count.total, count.last_hour))
    console.print(dead)
    if status.unresolved_by_reason:
        reasons = Table("topic", "reason", "unresolved", "last seen", title="Unresolved by reason")
        for r in status.unresolved_by_reason:
            reasons.add_row(*_texts(r.topic, r.reason, r.unresolved, r.last_seen.isoformat()))
        console.print(reasons)
    leader = status.leader or "none leads"
    jobs = Table(
        "job",
        "schedule",
        "zone",
        "last run",
        "next run",
        "problem",
        title=Text(f"Jobs (scheduler leader: {leader})"),
    )
    for job in status.jobs:
        jobs.add_row(
            *_texts(
                job.name,
                job.schedule or "-",
                job.timezone or "-",
                _last_run(job.last_run),
                job.next_run.isoformat() if job.next_run else "-",
                job.problem or "",
            )
        )
    console.print(jobs)


def print_jobs(jobs: list[JobStatus]) -> None:
    """One row a job: schedule, zone, misfire policy, enabled, last and next run; an
    invalid cron_jobs row says `invalid`, and why it does not run where the next run is."""
    table = Table("job", "schedule", "zone", "misfire", "enabled", "last run", "next run")
    for job in jobs:
        upcoming = job.next_run.isoformat() if job.next_run else job.problem or "-"
        enabled = "invalid" if job.invalid else "yes" if job.enabled else "no"
        table.add_row(
            *_texts(
                job.name,
                job.schedule or "-",
                job.timezone or "-",
                job.misfire_policy or "-",
                enabled,
                _last_run(job.last_run),
                upcoming,
            )
        )
    Console(width=WIDTH).print(table)


def _last_run(last: LastRun | None) -> str:
    return last.describe() if last is not None else "-"


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _texts(*cells: object) -> list[Text]:
    return [Text(str(cell)) for cell in cells]
