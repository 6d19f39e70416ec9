"""The status made whole once collected: the sampler's stalls and history, the other
consumers in a line each, and the summary line."""

from __future__ import annotations

from cronstream.status.model import Group, Status
from cronstream.status.recent import empty_summary
from cronstream.status.samples import Samples


def finish(status: Status, samples: Samples | None, not_ready: list[str] | None) -> None:
    """`samples`: the serving process's sampler (None: `cronstream status`, which has
    none). `not_ready`: what /readyz names (None: not known here)."""
    own = status.own_partitions
    if samples is not None:
        stalled = samples.stalled()
        for partition in own:
            partition.stalled_s = stalled.get((partition.topic, partition.partition))
        status.history = samples.history()
    status.groups = groups(status)
    summary = status.summary = status.summary or empty_summary()
    summary.ready = None if not_ready is None else not not_ready
    summary.not_ready = list(not_ready or [])
    summary.applied_per_s = samples.applied_per_s() if samples is not None else None
    summary.group_lag = sum(p.lag or 0 for p in own)
    summary.stalled = sum(p.stalled_s is not None for p in own)
    summary.leader = status.leader
    summary.jobs_set_aside = [job.name for job in status.jobs if job.problem]
    summary.jobs_failing = [
        job.name
        for job in status.jobs
        if not job.problem and job.last_run is not None and job.last_run.status == "failed"
    ]


def groups(status: Status) -> list[Group]:
    """Every consumer but the live group, in one line each."""
    found: dict[str, Group] = {}
    for p in status.partitions:
        if p.consumer == status.consumer_group:
            continue
        group = found.setdefault(p.consumer, Group(p.consumer, 0, 0, 0))
        group.partitions += 1
        group.lag += p.lag or 0
        group.problems += p.problem is not None
    return list(found.values())
