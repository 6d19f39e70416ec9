"""Prometheus metrics: every metric of cronstream, defined once, on prometheus_client's
default registry (which `GET /metrics` serves through `generate_latest()`).

Labels are only topic, partition, job and status: sets an operator configured, so the
number of series stays bounded. Never an event id, key or error text: each label value
is a time series of its own.

The batch engine applies ~60k events/s, so records are counted per batch (`inc(n)`),
never with a metric call per record.

Several worker processes (`cronstream worker --processes N`) use prometheus-client's
multiprocess mode: the supervisor makes a private directory (`multiprocess_dir`) and
names it in PROMETHEUS_MULTIPROC_DIR before it starts them, each child's
prometheus-client then keeps its values in files there (chosen when prometheus-client is
first imported), and the supervisor's /metrics reads them all (`multiprocess_registry`):
counters and histograms summed over every child that ever ran (so they never go back),
gauges by their `multiprocess_mode`. The files of a dead child's live gauges are
removed by `process_dead`. Removing a labelled series is not possible in that mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

__all__ = [
    "BATCH_RECORDS",
    "BATCH_SECONDS",
    "CONSUMER_LAG",
    "CRON_RUNS",
    "CRON_TICK_LAG",
    "NOTIFY_RUNS",
    "PARTITION_STALLED",
    "RECORDS_APPLIED",
    "RECORDS_CONSUMED",
    "RECORDS_DEAD_LETTERED",
    "RECORDS_DUPLICATE",
    "SCANNER_ROWS_EMITTED",
    "SCANNER_ROWS_REJECTED",
    "SCHEDULER_STATE",
    "WORKER_RESTARTS",
    "count_batch",
    "count_consumed",
    "forget_partition",
    "multiprocess_dir",
    "multiprocess_registry",
    "process_dead",
    "restarted",
    "scheduler_state",
]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Batches are one poll: a record or two once caught up, up to batch_size (at most
# 100000) while behind.
SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
# A batch takes milliseconds; an outage retried in place stretches it to minutes.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# A run starts within milliseconds of its tick, seconds with jitter, up to hours when a
# catch-up (misfire policy `all`) runs late ticks one after another.
TICK_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

RECORDS_CONSUMED = Counter(
    "cronstream_records_consumed", "Records a worker received from Kafka", ["topic"]
)
RECORDS_APPLIED = Counter(
    "cronstream_records_applied", "Records applied and checkpointed in Postgres", ["topic"]
)
RECORDS_DUPLICATE = Counter(
    "cronstream_records_duplicate",
    "Records dropped at or below their partition's checkpoint (already applied)",
    ["topic"],
)
RECORDS_DEAD_LETTERED = Counter(
    "cronstream_records_dead_lettered",
    "Records sent to the dead-letter topic, by the topic they came from",
    ["topic"],
)
OFFSET_GAPS = Counter(
    "cronstream_offset_gaps",
    "Polls whose first offset on a partition was beyond checkpoint + 1 (compaction, "
    "transaction markers or retention make such gaps legitimate)",
    ["topic"],
)
UNREADABLE_RECORDS = Counter(
    "cronstream_unreadable_records",
    "Records the Kafka client could not parse, read byte for byte and dead-lettered",
    ["topic"],
)
BATCH_RECORDS = Histogram(
    "cronstream_batch_records", "Records per applied batch", buckets=SIZE_BUCKETS
)
BATCH_SECONDS = Histogram(
    "cronstream_batch_seconds",
    "Seconds to apply a batch under the checkpoint protocol, outage retries included",
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "cronstream_consumer_lag",
    "Records in the partition past the worker's position (log end minus position)",
    ["topic", "partition"],
    # A partition is one process's at a time; after it moves, the new owner's value is
    # the newer one, and a dead process's values go with it.
    multiprocess_mode="livemostrecent",
)
PARTITION_STALLED = Gauge(
    "cronstream_partition_stalled",
    "1 while a partition of the consumer group has lag and its checkpoint has not moved "
    "for CRONSTREAM_STALL_SECONDS (set by the process serving the status page)",
    ["topic", "partition"],
)
CRON_RUNS = Counter(
    "cronstream_cron_runs",
    "Scheduled runs by job and final status (succeeded, failed, skipped)",
    ["job", "status"],
)
CRON_TICK_LAG = Histogram(
    "cronstream_cron_tick_lag_seconds",
    "Seconds between a run's scheduled time and its start",
    ["job"],
    buckets=TICK_LAG_BUCKETS,
)
SCANNER_ROWS_EMITTED = Counter(
    "cronstream_scanner_rows_emitted",
    "Source rows a scan emitted as events (acknowledged by Kafka)",
    ["job"],
)
SCANNER_ROWS_REJECTED = Counter(
    "cronstream_scanner_rows_rejected",
    "Source rows a scan refused (recorded in scan_rejected_rows), counted on every run",
    ["job"],
)
NOTIFY_RUNS = Counter(
    "cronstream_notify_runs",
    "Scans started by a NOTIFY on the job's channel (or the scan after each new LISTEN)",
    ["job"],
)

# Labelled, so that a process running no scheduler exports no series: "no leader among
# the schedulers scraped" is then sum(...{status="leading"}) == 0, never a worker's 0.
SCHEDULER_STATE = Gauge(
    "cronstream_scheduler_state",
    "1 for the state this process's scheduler is in (leading or standby), 0 for the other",
    ["status"],
    multiprocess_mode="livesum",  # as sum(...) over processes scraped one by one
)
SCHEDULER_STATES = ("leading", "standby")

# Labelled, so that worker processes, which define it too, write no series of it: only
# their supervisor counts, and serves it beside theirs (`multiprocess_registry`).
WORKER_RESTARTS = Counter(
    "cronstream_worker_restarts",
    "Worker processes a `worker --processes` supervisor started again, by how they ended "
    "(exited, or killed by a signal)",
    ["status"],
)


def count_consumed(by_topic: Mapping[str, int]) -> None:
    """Records received from Kafka, counted once per batch before it is applied."""
    for topic, n in by_topic.items():
        RECORDS_CONSUMED.labels(topic).inc(n)


def count_batch(
    size: int,
    applied: Mapping[str, int],
    duplicates: Mapping[str, int],
    dead_lettered: Mapping[str, int],
    seconds: float,
) -> None:
    """One applied batch: its records by topic and fate, its size and how long it took."""
    for counter, counts in (
        (RECORDS_APPLIED, applied),
        (RECORDS_DUPLICATE, duplicates),
        (RECORDS_DEAD_LETTERED, dead_lettered),
    ):
        for topic, n in counts.items():
            counter.labels(topic).inc(n)
    BATCH_RECORDS.observe(size)
    BATCH_SECONDS.observe(seconds)


def forget_partition(topic: str, partition: int) -> None:
    """Drop a partition's lag: it moved to another worker, which reports it now.

    Not in multiprocess mode, which cannot (and warns): there the new owner's newer
    value wins (`livemostrecent`)."""
    if not multiprocess_mode():
        CONSUMER_LAG.remove(topic, str(partition))


def multiprocess_mode() -> bool:
    """True in a process whose metrics go to PROMETHEUS_MULTIPROC_DIR's files."""
    return MULTIPROC_DIR in os.environ


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A new private directory (mode 0700) named in PROMETHEUS_MULTIPROC_DIR, so that the
    processes started inside the block keep their metrics there; removed at the end.

    Call it in the supervisor after prometheus-client was imported (this module does),
    so the supervisor's own metrics stay in memory."""
    path = tempfile.mkdtemp(prefix="cronstream-metrics-")  # 0700, owner only
    before = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = before
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry whose exposition is the metrics the processes wrote into `path`, and
    the supervisor's own: its count of restarts, and the stalled partitions its status
    sampler (web/app.py) finds."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    registry.register(WORKER_RESTARTS)
    registry.register(PARTITION_STALLED)
    return registry


def restarted(exit_code: int) -> None:
    """A supervisor starts a worker process again that ended with `exit_code`."""
    WORKER_RESTARTS.labels("killed" if exit_code < 0 else "exited").inc()


def process_dead(pid: int, path: str) -> None:
    """A child exited: its live gauges (the lag of its partitions) go with it."""
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def scheduler_state(state: str | None) -> None:
    """This process's scheduler leads, stands by, or (None) has stopped: no series."""
    if state is None:
        SCHEDULER_STATE.clear()
        return
    for status in SCHEDULER_STATES:
        SCHEDULER_STATE.labels(status).set(1 if status == state else 0)
