"""The status model (model.py) gathered from Postgres and Kafka: positions, dead letters,
jobs.

Per consumer, topic and partition: the Postgres checkpoint against Kafka's log end, and
the lag between them (records not applied yet). Partitions of the live group's input
topics that have no checkpoint row yet are shown too, their lag from where a worker
would start them (Kafka's committed offset, else the log start). A checkpoint at or beyond the log
end plus one cannot be lag: the topic was recreated or Kafka lost data, and it is
flagged. So is a checkpoint below the log start: records were deleted unapplied.

Collecting never hangs: Postgres and Kafka each get `SERVICE_TIMEOUT` seconds, and an
unreachable one is named in `Status.unreachable` while the rest is still shown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.kafka import clients, metadata
from cronstream.pg import connections
from cronstream.runtime.untrusted import shown
from cronstream.schedulers import runs
from cronstream.schedulers.cron import CronError
from cronstream.schedulers.jobs import Job, JobError, load_file, load_table, merge
from cronstream.schedulers.leader import LEADER_APPLICATION, LEADER_LOCK
from cronstream.status import recent, summary
from cronstream.status.model import (
    DeadLetter,
    DeadLetterCount,
    JobStatus,
    LastRun,
    Partition,
    Status,
    UnresolvedReason,
)
from cronstream.status.samples import Samples
from cronstream.status.sql import query

SERVICE_TIMEOUT = 5.0  # seconds for each of Postgres and Kafka
LATEST_DEAD_LETTERS = 20
TOP_REASONS = 20  # unresolved dead letters by topic and reason: the most numerous


@dataclass
class Jobs:
    """Jobs as `jobs list` loads them: file and cron_jobs rows, invalid rows apart."""

    jobs: list[Job]
    invalid: dict[str, str]
    latest: dict[str, asyncpg.Record]


def file_jobs(jobs_file: Path | None) -> list[Job]:
    """The jobs file's jobs (none without a file); a JobError when it cannot be loaded."""
    return load_file(jobs_file) if jobs_file else []


async def load_jobs(connection: asyncpg.Connection, from_file: list[Job]) -> Jobs:
    """The file's jobs with the cron_jobs table's, and each one's newest run; invalid
    rows are returned apart, with their reason."""
    from_table, invalid = await load_table(connection)
    jobs = merge(from_file, from_table, invalid)
    latest = await runs.latest(connection, [*(job.name for job in jobs), *invalid])
    return Jobs(jobs, invalid, latest)


async def collect_jobs(settings: Settings, jobs_file: Path | None) -> list[JobStatus]:
    """What `jobs list` shows: each job's status; a bad jobs file fails before connecting."""
    from_file = file_jobs(jobs_file)
    async with connections.connection(settings) as connection:
        loaded = await load_jobs(connection, from_file)
    return job_statuses(loaded, datetime.now(UTC))


def job_statuses(loaded: Jobs, now: datetime) -> list[JobStatus]:
    """Each job's status at `now`: its next run computed here, once for every renderer."""
    found: list[JobStatus] = []
    for job in loaded.jobs:
        upcoming: datetime | None = None
        problem = None
        if job.enabled:
            try:
                upcoming = job.schedule.next_after(now).astimezone(job.schedule.tz)
            except CronError as error:
                problem = f"schedule: {error}"
        found.append(
            JobStatus(
                name=job.name,
                schedule=job.schedule.expression,
                timezone=job.schedule.timezone,
                enabled=job.enabled,
                last_run=last_run(loaded.latest.get(job.name), job.schedule.tz),
                next_run=upcoming,
                problem=problem,
                misfire_policy=job.misfire_policy,
            )
        )
    for name, reason in sorted(loaded.invalid.items()):
        found.append(
            JobStatus(
                name=name,
                schedule=None,
                timezone=None,
                enabled=False,
                last_run=last_run(loaded.latest.get(name), UTC),
                next_run=None,
                problem=f"not run: {reason}",
            )
        )
    return found


def last_run(row: asyncpg.Record | None, tz: tzinfo) -> LastRun | None:
    """The newest run, its time in the job's zone as `next_run` is."""
    if row is None:
        return None
    started, finished = row["started_at"], row["finished_at"]
    return LastRun(
        status=row["status"],
        scheduled_for=row["scheduled_for"].astimezone(tz),
        rows=row["rows_emitted"],
        rejected=row["rows_rejected"],
        duration_s=(finished - started).total_seconds() if started and finished else None,
        error=shown(row["error"]) if row["error"] else None,
    )


@dataclass
class Live:
    """What only the process serving the page has: its samples (`status.sampler`), what
    its /readyz names, and the sampler's open connections (a started groupless consumer,
    whose first offsets request costs a third of a second, and a Postgres pool) and the
    group's committed offsets it last read (an admin client each time costs more)."""

    samples: Samples | None = None
    not_ready: list[str] | None = None
    reader: AIOKafkaConsumer | None = None
    pool: asyncpg.Pool | None = None
    committed: dict[TopicPartition, int] | None = None


async def collect(settings: Settings, jobs_file: Path | None, live: Live | None = None) -> Status:
    """Everything the status shows, from Postgres then Kafka, each within its timeout;
    with what the serving process has (`live`; `cronstream status` has none of it)."""
    live = live or Live()
    now = datetime.now(UTC)
    status = Status(collected_at=now, consumer_group=settings.consumer_group)
    try:
        await asyncio.wait_for(
            _from_postgres(settings, jobs_file, status, live.pool), SERVICE_TIMEOUT
        )
    except (TimeoutError, connections.DatabaseUnavailable, *connections.CONNECT_ERRORS) as error:
        status.unreachable["postgres"] = _reason(error, settings)
    try:
        await asyncio.wait_for(_from_kafka(settings, status, live), SERVICE_TIMEOUT)
    except (TimeoutError, KafkaError, OSError) as error:
        status.unreachable["kafka"] = _reason(error, settings)
    summary.finish(status, live.samples, live.not_ready)
    return status


def _reason(error: BaseException, settings: Settings) -> str:
    """One line on why a service did not answer; never the password."""
    if isinstance(error, TimeoutError):
        return f"no answer within {SERVICE_TIMEOUT:g}s"
    if isinstance(error, connections.DatabaseUnavailable):
        return str(error)
    if isinstance(error, asyncpg.UndefinedTableError):
        return (
            f"{settings.database_url_redacted} has no cronstream tables: run 'cronstream migrate'"
        )
    if isinstance(error, KafkaError):  # aiokafka's str() starts with the class name
        text = str(error)
        name = type(error).__name__
        return shown(text if text.startswith(name) else f"{name}: {text}")
    return str(connections.unavailable(settings, error))


async def _from_postgres(
    settings: Settings, jobs_file: Path | None, status: Status, pool: asyncpg.Pool | None
) -> None:
    opened = pool.acquire() if pool is not None else connections.connection(settings)
    async with opened as connection:
        for row in await connection.fetch(query("status_checkpoints")):
            status.partitions.append(
                Partition(row["consumer"], row["topic"], row["partition"], row["offset"])
            )
        status.dead_letter_counts = [
            DeadLetterCount(row["topic"], row["total"], row["last_hour"])
            for row in await connection.fetch(query("status_dead_letter_counts"))
        ]
        status.unresolved_by_reason = [
            UnresolvedReason(row["topic"], row["error"], row["unresolved"], row["last_seen"])
            for row in await connection.fetch(query("status_unresolved_by_reason"), TOP_REASONS)
        ]
        status.dead_letters = [
            DeadLetter(
                consumer=row["consumer"],
                topic=row["topic"],
                partition=row["partition"],
                offset=row["offset"],
                dlq_topic=row["dlq_topic"],
                error=row["error"],
                attempts=row["attempts"],
                created_at=row["created_at"],
            )
            for row in await connection.fetch(
                query("status_dead_letters_latest"), LATEST_DEAD_LETTERS
            )
        ]
        leader = await connection.fetchrow(query("status_leader"), LEADER_LOCK)
        if leader is not None:
            name = leader["application_name"] or ""
            status.leader = name.removeprefix(LEADER_APPLICATION).strip() or "(unnamed)"
        try:
            from_file = file_jobs(jobs_file)
        except JobError as error:
            status.jobs_error = str(error)
            from_file = []
        status.jobs = job_statuses(await load_jobs(connection, from_file), status.collected_at)
        await recent.from_postgres(connection, status)


async def _from_kafka(settings: Settings, status: Status, live: Live) -> None:
    """Log start and end of every partition shown, plus the live group's own partitions."""
    reader = live.reader
    if reader is None:
        own = AIOKafkaConsumer(**clients.connection_options(settings))  # no group: reads only
        async with clients.started(own) as consumer:
            existing, partitions, starts, ends = await _offsets(settings, status, consumer)
    else:
        existing, partitions, starts, ends = await _offsets(settings, status, reader)
    group = settings.consumer_group
    known = {(p.consumer, p.topic, p.partition) for p in status.partitions}
    unchecked = [
        tp
        for tp in partitions
        if tp.topic in settings.input_topics
        and (group, tp.topic, tp.partition) not in known
        and starts[tp] < ends[tp]
    ]
    # Where the worker would start them (positions.py): Kafka's committed offset, if any.
    committed = (
        live.committed
        if live.committed is not None
        else await metadata.committed(settings, group, unchecked)
    )
    for tp in partitions:
        if tp.topic in settings.input_topics and (group, tp.topic, tp.partition) not in known:
            missing = Partition(group, tp.topic, tp.partition, None, committed=committed.get(tp))
            if "postgres" in status.unreachable:
                missing.problem = "checkpoint unknown: Postgres unreachable"
            status.partitions.append(missing)
    status.partitions.sort(key=lambda p: (p.consumer != group, p.consumer, p.topic, p.partition))
    for shown_partition in status.partitions:
        tp = TopicPartition(shown_partition.topic, shown_partition.partition)
        if shown_partition.topic not in existing:
            shown_partition.problem = "topic does not exist in Kafka"
        elif tp not in ends:
            shown_partition.problem = "partition does not exist in Kafka"
        else:
            problem = shown_partition.problem
            _measure(shown_partition, starts[tp], ends[tp])
            shown_partition.problem = shown_partition.problem or problem


async def _offsets(
    settings: Settings, status: Status, consumer: AIOKafkaConsumer
) -> tuple[set[str], list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    # One metadata request for every topic (never creates one); the consumer's own
    # `topics()` fetches the same but keeps the partitions to itself.
    cluster = await metadata.cluster_metadata(consumer)
    existing = set(cluster.topics())
    wanted = {p.topic for p in status.partitions} | set(settings.input_topics)
    partitions = [
        TopicPartition(topic, number)
        for topic in sorted(wanted & existing)
        for number in sorted(cluster.partitions_for_topic(topic) or ())
    ]
    starts = await consumer.beginning_offsets(partitions) if partitions else {}
    ends = await consumer.end_offsets(partitions) if partitions else {}
    return existing, partitions, starts, ends


def _measure(partition: Partition, start: int, end: int) -> None:
    partition.log_start, partition.log_end = start, end
    if partition.checkpoint is None:
        committed = partition.committed
        from_ = committed if committed is not None and start <= committed <= end else start
        partition.lag = end - from_
        return
    following = partition.checkpoint + 1  # the next offset to apply
    if following > end:
        partition.problem = (
            f"checkpoint {partition.checkpoint} is beyond the log end {end}: "
            "topic recreated or Kafka data lost?"
        )
    elif following < start:
        partition.lag = end - start
        partition.problem = (
            f"{start - following} record(s) deleted by retention before they were applied"
        )
    else:
        partition.lag = end - following
