"""Metrics an operator scrapes: names, labels, and what the engines count per batch.

The engines are driven with small fakes for the applier and the consumer; the real
scrape after traffic is tests/integration/test_metrics.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY, generate_latest

from cronstream.config.settings import Settings
from cronstream.handlers.outcomes import DeadLetter, Outcome
from cronstream.handlers.records import ConsumedRecord
from cronstream.handlers.registry import Registry
from cronstream.runtime import metrics
from cronstream.streams.batch_engine import BatchEngine
from cronstream.streams.batches import BatchLoop

README = Path(__file__).resolve().parents[2] / "README.md"

# (name as scraped, type, labels, the object): what dashboards and alerts are written against.
EXPECTED = [
    ("cronstream_records_consumed_total", "counter", {"topic"}, metrics.RECORDS_CONSUMED),
    ("cronstream_records_applied_total", "counter", {"topic"}, metrics.RECORDS_APPLIED),
    ("cronstream_records_duplicate_total", "counter", {"topic"}, metrics.RECORDS_DUPLICATE),
    ("cronstream_records_dead_lettered_total", "counter", {"topic"}, metrics.RECORDS_DEAD_LETTERED),
    ("cronstream_offset_gaps_total", "counter", {"topic"}, metrics.OFFSET_GAPS),
    ("cronstream_unreadable_records_total", "counter", {"topic"}, metrics.UNREADABLE_RECORDS),
    ("cronstream_batch_records", "histogram", set(), metrics.BATCH_RECORDS),
    ("cronstream_batch_seconds", "histogram", set(), metrics.BATCH_SECONDS),
    ("cronstream_consumer_lag", "gauge", {"topic", "partition"}, metrics.CONSUMER_LAG),
    (
        "cronstream_partition_stalled",
        "gauge",
        {"topic", "partition"},
        metrics.PARTITION_STALLED,
    ),
    ("cronstream_cron_runs_total", "counter", {"job", "status"}, metrics.CRON_RUNS),
    ("cronstream_cron_tick_lag_seconds", "histogram", {"job"}, metrics.CRON_TICK_LAG),
    ("cronstream_scanner_rows_emitted_total", "counter", {"job"}, metrics.SCANNER_ROWS_EMITTED),
    ("cronstream_scanner_rows_rejected_total", "counter", {"job"}, metrics.SCANNER_ROWS_REJECTED),
    ("cronstream_notify_runs_total", "counter", {"job"}, metrics.NOTIFY_RUNS),
    ("cronstream_scheduler_state", "gauge", {"status"}, metrics.SCHEDULER_STATE),
    ("cronstream_worker_restarts_total", "counter", {"status"}, metrics.WORKER_RESTARTS),
]
NAMES = [name for name, *_ in EXPECTED]


def ours() -> dict[str, Any]:
    """cronstream's metric families on the default registry, by scraped name."""
    found = {}
    for family in REGISTRY.collect():
        if family.name.startswith("cronstream_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = family
    return found


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("name", "kind", "labels", "metric"), EXPECTED)
def test_each_metric_has_its_name_type_and_labels(
    name: str, kind: str, labels: set[str], metric: Any
) -> None:
    assert ours()[name].type == kind
    # Read off the object: a scrape shows a label only once a series has it.
    assert set(metric._labelnames) == labels


def test_no_metric_beyond_the_documented_ones() -> None:
    assert set(ours()) == set(NAMES)


def test_the_scheduler_state_is_one_of_leading_or_standby_and_gone_when_it_stops() -> None:
    metrics.scheduler_state("standby")
    assert (value("cronstream_scheduler_state", status="leading"),
            value("cronstream_scheduler_state", status="standby")) == (0, 1)  # fmt: skip
    metrics.scheduler_state("leading")
    assert (value("cronstream_scheduler_state", status="leading"),
            value("cronstream_scheduler_state", status="standby")) == (1, 0)  # fmt: skip
    metrics.scheduler_state(None)
    # No series at all: a process without a scheduler never reads as "no leader".
    assert REGISTRY.get_sample_value("cronstream_scheduler_state", {"status": "standby"}) is None
    assert REGISTRY.get_sample_value("cronstream_scheduler_state", {"status": "leading"}) is None


def test_labels_are_bounded_sets_never_ids_or_keys() -> None:
    allowed = {"topic", "partition", "job", "status"}
    for name, family in ours().items():
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= allowed, (name, sample.labels)


@pytest.mark.parametrize("name", NAMES)
def test_readme_lists_each_metric(name: str) -> None:
    section = README.read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
    assert re.search(rf"`{name}`", section), f"README's Metrics table lacks {name}"


def settings() -> Settings:
    return Settings(retry_backoff=0.01, retry_backoff_max=0.01)


def records(topic: str, n: int, partition: int = 0) -> list[ConsumedRecord]:
    return [ConsumedRecord(topic, partition, offset, b"{}") for offset in range(n)]


class FakeApplier:
    """Fails with the given errors first, then returns the outcome."""

    def __init__(self, outcome: Outcome, failures: Sequence[Exception] = ()) -> None:
        self.outcome = outcome
        self.failures = list(failures)
        self.calls = 0

    async def apply(self, connection: Any, records: Sequence[ConsumedRecord]) -> Outcome:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.outcome


def batch_loop(applier: FakeApplier, stop: asyncio.Event | None = None) -> BatchLoop:
    loop = BatchLoop(settings(), Registry(), stop or asyncio.Event())
    loop.applier.apply = applier.apply  # type: ignore[method-assign]

    async def no_connection() -> asyncpg.Connection:
        return None  # the fake applier needs none

    loop._connection = no_connection  # type: ignore[method-assign]
    return loop


async def test_a_batch_is_counted_by_topic_and_fate() -> None:
    orders, users = f"orders-{uuid.uuid4().hex}", f"users-{uuid.uuid4().hex}"
    batch = records(orders, 5) + records(users, 3)
    outcome = Outcome(
        applied_by_topic=Counter({orders: 3, users: 2}),
        duplicates_by_topic=Counter({orders: 1}),
        dead_letters=[DeadLetter(batch[4], "not JSON", 1), DeadLetter(batch[7], "no handler", 1)],
    )
    sizes = value("cronstream_batch_records_count")
    assert await batch_loop(FakeApplier(outcome)).apply(batch) is outcome

    assert value("cronstream_records_consumed_total", topic=orders) == 5
    assert value("cronstream_records_consumed_total", topic=users) == 3
    assert value("cronstream_records_applied_total", topic=orders) == 3
    assert value("cronstream_records_applied_total", topic=users) == 2
    assert value("cronstream_records_duplicate_total", topic=orders) == 1
    assert value("cronstream_records_dead_lettered_total", topic=orders) == 1
    assert value("cronstream_records_dead_lettered_total", topic=users) == 1
    assert value("cronstream_batch_records_count") == sizes + 1


async def test_outage_retries_are_one_batch_whose_latency_includes_them() -> None:
    topic = f"t-{uuid.uuid4().hex}"
    batches = value("cronstream_batch_seconds_count")
    seconds = value("cronstream_batch_seconds_sum")
    applier = FakeApplier(
        Outcome(applied_by_topic=Counter({topic: 4})),
        failures=[ConnectionRefusedError("postgres down"), ConnectionRefusedError("still down")],
    )
    await batch_loop(applier).apply(records(topic, 4))

    assert applier.calls == 3
    assert value("cronstream_records_consumed_total", topic=topic) == 4  # once, not per try
    assert value("cronstream_records_applied_total", topic=topic) == 4
    assert value("cronstream_batch_seconds_count") == batches + 1
    assert value("cronstream_batch_seconds_sum") - seconds >= 0.02  # two backoffs of 0.01 s


async def test_a_batch_abandoned_at_stop_is_consumed_but_not_applied() -> None:
    topic = f"t-{uuid.uuid4().hex}"
    stop = asyncio.Event()
    stop.set()
    applier = FakeApplier(Outcome(), failures=[ConnectionRefusedError("postgres down")])
    batches = value("cronstream_batch_records_count")

    assert await batch_loop(applier, stop).apply(records(topic, 2)) is None
    assert value("cronstream_records_consumed_total", topic=topic) == 2
    assert value("cronstream_records_applied_total", topic=topic) == 0
    assert value("cronstream_batch_records_count") == batches


class FakeConsumer:
    """What the lag gauge reads of an aiokafka consumer."""

    def __init__(
        self, ends: dict[TopicPartition, int | None], positions: dict[TopicPartition, int]
    ):
        self.ends = ends
        self.positions = positions
        self.stuck: set[TopicPartition] = set()  # an offset reset that does not finish

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp]

    async def position(self, tp: TopicPartition) -> int:
        if tp in self.stuck:
            await asyncio.Event().wait()
        return self.positions[tp]


async def test_lag_per_partition_is_log_end_minus_position_and_goes_on_revocation() -> None:
    topic = f"t-{uuid.uuid4().hex}"
    behind, caught_up, never_fetched = (TopicPartition(topic, p) for p in range(3))
    consumer = FakeConsumer(
        {behind: 120, caught_up: 40, never_fetched: None}, {behind: 20, caught_up: 40}
    )
    engine = BatchEngine(settings(), Registry())
    await engine._record_lag(consumer)

    assert value("cronstream_consumer_lag", topic=topic, partition="0") == 100
    assert (
        REGISTRY.get_sample_value("cronstream_consumer_lag", {"topic": topic, "partition": "1"})
        == 0
    )
    assert (
        REGISTRY.get_sample_value("cronstream_consumer_lag", {"topic": topic, "partition": "2"})
        is None
    )

    await engine.wait_for_inflight({behind})
    assert (
        REGISTRY.get_sample_value("cronstream_consumer_lag", {"topic": topic, "partition": "0"})
        is None
    )
    assert value("cronstream_consumer_lag", topic=topic, partition="1") == 0


async def test_lag_never_holds_up_the_poll_loop() -> None:
    topic = f"t-{uuid.uuid4().hex}"
    tp = TopicPartition(topic, 0)
    consumer = FakeConsumer({tp: 10}, {tp: 0})
    consumer.stuck.add(tp)
    async with asyncio.timeout(1):
        await BatchEngine(settings(), Registry())._record_lag(consumer)


def test_faust_lag_is_measured_after_each_batch_for_its_partitions() -> None:
    from faust.types import TP

    from cronstream.streams.faust.engine import record_lag

    topic = f"t-{uuid.uuid4().hex}"
    events = [
        SimpleNamespace(message=SimpleNamespace(tp=TP(topic, p), offset=o))
        for p, o in [(0, 7), (0, 8), (1, 3)]
    ]
    ends = {TP(topic, 0): 9, TP(topic, 1): 10}
    record_lag(SimpleNamespace(highwater=ends.get), events)  # type: ignore[arg-type]

    assert value("cronstream_consumer_lag", topic=topic, partition="0") == 0
    assert value("cronstream_consumer_lag", topic=topic, partition="1") == 6


def test_the_multiprocess_directory_is_private_named_for_children_and_removed() -> None:
    before = os.environ.get(metrics.MULTIPROC_DIR)
    with metrics.multiprocess_dir() as path:
        assert os.environ[metrics.MULTIPROC_DIR] == path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert metrics.multiprocess_mode()
        metrics.restarted(-9)
        metrics.PARTITION_STALLED.labels("sampled", "2").set(1)  # by its status sampler
        scraped = generate_latest(metrics.multiprocess_registry(path)).decode()
        assert "cronstream_records_applied" not in scraped  # no child wrote anything yet
        assert 'cronstream_worker_restarts_total{status="killed"}' in scraped  # its own
        assert 'cronstream_partition_stalled{partition="2",topic="sampled"} 1.0' in scraped
        metrics.process_dead(12345, path)  # a child that never wrote: nothing to remove
    assert os.environ.get(metrics.MULTIPROC_DIR) == before
    assert not Path(path).exists()


def test_a_moved_partition_is_not_removed_in_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """prometheus-client cannot remove a series there, and warns (an error under
    pytest): the new owner's newer value wins (livemostrecent)."""
    metrics.CONSUMER_LAG.labels("moved", "3").set(7)
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))
    metrics.forget_partition("moved", 3)
    monkeypatch.delenv(metrics.MULTIPROC_DIR)
    assert (
        REGISTRY.get_sample_value("cronstream_consumer_lag", {"topic": "moved", "partition": "3"})
        == 7
    )
    metrics.forget_partition("moved", 3)
    assert (
        REGISTRY.get_sample_value("cronstream_consumer_lag", {"topic": "moved", "partition": "3"})
        is None
    )
