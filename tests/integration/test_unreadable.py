"""A record no Kafka client of ours can parse, between valid records on several partitions.

kcat (librdkafka, Debian's package) writes a header whose *name* is not UTF-8, as the
Java clients may; aiokafka's parser raises on it inside a poll. Every valid record is
still applied exactly once, on both engines and in a replay, and the bad one is
dead-lettered once with its bytes.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.kafka import clients
from cronstream.streams import deadletter
from tests.integration.commands import run_cli
from tests.integration.kafka_helpers import read_all, wait_for
from tests.integration.workers import (
    HANDLERS,
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    count_events,
    create_counts_table,
    wait_until_at_end,
    worker_env,
)

PARTITIONS = 3
BEFORE, AFTER = 200, 300  # valid records per partition before and after the bad one
BAD_PARTITION = 1
BAD_NAME = b"\xff\xfename"
HOW_TO = "kcat not found: run 'make test' as root, or 'sudo apt-get install kcat'"


def kcat() -> str:
    found = shutil.which("kcat")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(HOW_TO, pytrace=False)
        pytest.skip(HOW_TO)
    return found


async def send_to(settings: Settings, partition: int, events: list[Event]) -> None:
    async with clients.started(clients.producer(settings)) as producer:
        for event in events:
            await producer.send(
                settings.sync_topic, event.encode(), key=event.kafka_key, partition=partition
            )
        await producer.flush()


def send_unreadable(settings: Settings, event: Event) -> None:
    """`event` with a header whose name is not UTF-8, written by kcat, to BAD_PARTITION."""
    subprocess.run(
        [
            kcat(),
            "-P",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            settings.sync_topic,
            "-p",
            str(BAD_PARTITION),
            "-k",
            event.kafka_key,
            "-H",
            BAD_NAME + b"=1",
            "-H",
            "ok=2",
        ],
        input=event.encode() + b"\n",
        check=True,
        timeout=30,
    )


async def topic_with_an_unreadable_record(settings: Settings) -> tuple[list[str], Event]:
    """BEFORE valid events on each partition, the bad one, AFTER more on each; the valid
    events' ids and the bad event (itself a valid envelope: only its header is bad)."""
    await clients.ensure_topics(settings, [settings.sync_topic])
    events = list(count_events(PARTITIONS * (BEFORE + AFTER)))
    per_partition = [events[p::PARTITIONS] for p in range(PARTITIONS)]
    for partition, mine in enumerate(per_partition):
        await send_to(settings, partition, mine[:BEFORE])
    [bad] = count_events(1, start=10_000)
    send_unreadable(settings, bad)
    for partition, mine in enumerate(per_partition):
        await send_to(settings, partition, mine[BEFORE:])
    return [e.id for e in events], bad


async def assert_dead_lettered_with_its_bytes(settings: Settings, bad: Event) -> None:
    [letter] = await read_all(settings, settings.dlq_topic(settings.sync_topic), expected=1)
    assert isinstance(letter, ConsumerRecord)
    headers = list(letter.headers)
    ours = dict(headers)
    assert ours[deadletter.PARTITION] == str(BAD_PARTITION).encode()
    assert ours[deadletter.OFFSET] == str(BEFORE).encode()
    assert b"not UTF-8" in ours[deadletter.ERROR], ours[deadletter.ERROR]
    assert letter.value == bad.encode() and letter.key == bad.kafka_key
    # The original headers in order, the unwritable name's bytes kept as a value.
    assert headers[:3] == [
        (deadletter.HEADER_NAME, BAD_NAME),
        (deadletter.HEADER_VALUE, b"1"),
        ("ok", b"2"),
    ]


async def applied_at_least(database_url: str, n: int) -> bool:
    return len(await applied_counts(database_url)) >= n


@pytest.fixture
def env(cli_env: dict[str, str], engine: str) -> dict[str, str]:
    return worker_env(cli_env, engine, CRONSTREAM_TOPIC_PARTITIONS=str(PARTITIONS))


async def test_a_worker_applies_every_valid_record_and_dead_letters_the_unreadable_one(
    settings: Settings, database_url: str, env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    await create_counts_table(database_url)
    settings = settings.model_copy(update={"topic_partitions": PARTITIONS})
    ids, bad = await topic_with_an_unreadable_record(settings)
    worker = WorkerProcess(env, tmp_path, "worker")
    worker.start()
    try:
        await wait_until_at_end(settings, worker, settings.sync_topic, 120)
    finally:
        worker.stop()
    counts = await applied_counts(database_url)
    assert bad.id not in counts
    assert_exactly_once(counts, ids)
    await assert_dead_lettered_with_its_bytes(settings, bad)
    log = worker.logs()
    # Said once, naming where: not once a second.
    assert log.count("polling Kafka failed") == 1, log[-3000:]
    said = [line for line in log.splitlines() if "Kafka clients cannot parse" in line]
    assert len(said) == 1 and f"[{BAD_PARTITION}]@{BEFORE}" in said[0], said


async def test_a_replay_applies_every_valid_record_and_dead_letters_the_unreadable_one(
    settings: Settings, database_url: str, cli_env: dict[str, str]
) -> None:
    await create_counts_table(database_url)
    settings = settings.model_copy(update={"topic_partitions": PARTITIONS})
    ids, bad = await topic_with_an_unreadable_record(settings)
    env = worker_env(cli_env, CRONSTREAM_TOPIC_PARTITIONS=str(PARTITIONS))
    result = run_cli(
        ["replay", "--topic", settings.sync_topic, "--handlers", HANDLERS, "--from-beginning"],
        env,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    total = len(ids) + 1
    assert f"{total} records read, {len(ids)} applied, 0 duplicates, 1 dead-lettered" in (
        result.stdout
    ), result.stdout
    counts = await applied_counts(database_url)
    assert bad.id not in counts
    assert_exactly_once(counts, ids)
    await assert_dead_lettered_with_its_bytes(settings, bad)


async def test_a_poll_past_checkpoint_plus_one_is_counted_and_said_once(
    settings: Settings, database_url: str, cli_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    """A transaction's commit marker takes an offset no consumer sees: the records of the
    next transaction resume one past checkpoint + 1. A legitimate gap, counted (by the
    faust engine per batch it is given)."""
    await create_counts_table(database_url)
    settings = settings.model_copy(update={"topic_partitions": 1})
    await clients.ensure_topics(settings, [settings.sync_topic])
    env = worker_env(cli_env, engine, CRONSTREAM_TOPIC_PARTITIONS="1")
    worker = WorkerProcess(env, tmp_path, "w")
    first, second = list(count_events(10)), list(count_events(10, start=10))
    producer = clients.producer(settings, transactional_id=f"tx-{settings.sync_topic}")
    worker.start()
    try:
        async with clients.started(producer):
            sent = 0
            for events in (first, second):
                async with producer.transaction():
                    for event in events:
                        await producer.send(
                            settings.sync_topic, event.encode(), key=event.kafka_key
                        )
                # The log ends at the commit marker, which no checkpoint covers: wait
                # for the events instead.
                sent += len(events)
                await wait_for(
                    functools.partial(applied_at_least, database_url, sent),
                    60,
                    f"{sent} events applied",
                )
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), [e.id for e in first + second])
    said = [line for line in worker.logs().splitlines() if "records resume at" in line]
    assert len(said) == 1 and "resume at 11, checkpoint + 1 is 10" in said[0], said
