"""The stream worker against real Kafka and Postgres, in real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka import clients
from cronstream.streams import deadletter
from tests.integration.kafka_helpers import read_all, wait_for
from tests.integration.workers import (
    WorkerProcess,
    applied_counts,
    assert_exactly_once,
    count_events,
    create_counts_table,
    publish,
    wait_until_at_end,
    worker_env,
)


@pytest.fixture
def env(cli_env: dict[str, str], engine: str) -> dict[str, str]:
    return worker_env(cli_env, engine)


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path, "worker")
    yield process
    process.stop()


async def wait_until_applied(settings: Settings, worker: WorkerProcess, seconds: float) -> None:
    await wait_until_at_end(settings, worker, settings.sync_topic, seconds)


async def test_events_are_applied_once_and_projected(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    await create_counts_table(database_url)
    worker.start()
    counted = list(count_events(300))
    synced = [
        Event.new(
            type="sync_required", source="t", entity="customer", key=1, version=v, payload={"v": v}
        )
        for v in (1, 3, 2)  # an older version arriving late must not win
    ]
    ids = await publish(settings, counted + synced)
    await wait_until_applied(settings, worker, 60)

    assert_exactly_once(await applied_counts(database_url), ids[:300])
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT version, payload FROM entity_projection WHERE entity = 'customer' AND key = '1'"
        )
    finally:
        await connection.close()
    assert row is not None
    assert (row["version"], json.loads(row["payload"])) == (3, {"v": 3})
    assert "batch applied" in worker.logs()


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_rest_is_applied(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    await create_counts_table(database_url)
    await clients.ensure_topics(settings, [settings.sync_topic])
    producer = clients.producer(settings)
    await producer.start()
    missing_field = json.loads(next(count_events(1)).encode())
    del missing_field["entity"]
    unknown = next(count_events(1, event_type="no_such_type"))
    failing = next(count_events(1, event_type="always_fails"))
    poison = [
        (b"\x00\xffgarbage", "invalid envelope: the value is not UTF-8"),
        (json.dumps(missing_field).encode(), "invalid envelope: field 'entity'"),
        (unknown.encode(), "no handler for event type 'no_such_type'"),
        (failing.encode(), "handler tests.integration.handlers_under_test.always_fails failed"),
    ]
    # One key, so all land in one partition in this order, with good events after each.
    good = list(count_events(8))
    sent: list[tuple[int, int]] = []
    try:
        for (value, _), (first, second) in zip(
            poison, zip(good[::2], good[1::2], strict=True), strict=True
        ):
            meta = await (
                await producer.send(
                    settings.sync_topic,
                    value=value,
                    key=b"p:1",
                    headers=[("trace_id", b"trace-poison")],
                )
            )
            sent.append((meta.partition, meta.offset))
            for event in (first, second):
                # A header without a value is legal in Kafka and must not upset the worker.
                await (
                    await producer.send(
                        settings.sync_topic,
                        value=event.encode(),
                        key=b"p:1",
                        headers=[("x-empty", None)],
                    )
                )
    finally:
        await producer.stop()

    worker.start()
    await wait_until_applied(settings, worker, 60)
    assert_exactly_once(await applied_counts(database_url), [e.id for e in good])

    letters = await read_all(settings, settings.dlq_topic(settings.sync_topic), expected=4)
    assert len(letters) == 4
    for letter, (value, reason), (partition, offset) in zip(
        sorted(letters, key=lambda r: r.offset), poison, sent, strict=True
    ):
        headers = dict(letter.headers)
        assert letter.value == value
        assert reason in headers[deadletter.ERROR].decode()
        assert headers[deadletter.TOPIC].decode() == settings.sync_topic
        assert int(headers[deadletter.PARTITION]) == partition
        assert int(headers[deadletter.OFFSET]) == offset
        assert headers["trace_id"] == b"trace-poison"
    attempts = [int(dict(letter.headers)[deadletter.ATTEMPTS]) for letter in letters]
    assert sorted(attempts) == [1, 1, 1, settings.handler_attempts]
    logs = worker.logs()
    assert '"trace_id": "trace-poison"' in logs  # the dead-letter log lines carry the trace


async def test_sigterm_during_a_batch_exits_cleanly_and_the_next_start_resumes(
    settings: Settings, database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    marker = tmp_path / "batch-started"
    worker = WorkerProcess(env | {"CRONSTREAM_TEST_BATCH_MARKER": str(marker)}, tmp_path, "w")
    slow = [
        Event.new(
            type="slow_count",
            source="t",
            entity="item",
            key=i,
            payload={"hold_seconds": 3},
            id=f"slow-{i}",
        )
        for i in range(50)
    ]
    ids = await publish(settings, slow)
    worker.start()
    try:
        await wait_for(lambda: marker.exists(), 60, "a batch to start")
        code, seconds = worker.terminate()
        assert code == 0, worker.logs()[-3000:]
        assert seconds < float(env["CRONSTREAM_SHUTDOWN_TIMEOUT"])
        assert "SIGTERM received" in worker.logs()

        worker.start()
        await wait_until_applied(settings, worker, 90)
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), ids)


def hostile_values() -> list[tuple[bytes | None, str]]:
    """Values an outside producer may write, each with the dead-letter reason it must get."""
    base = json.loads(next(count_events(1)).encode())

    def envelope(payload_json: str) -> bytes:
        text = json.dumps(base | {"payload": {}})
        return text.replace('"payload": {}', f'"payload": {payload_json}').encode()

    return [
        (envelope('{"a\\u0000b": 1}'), "contains \\u0000"),
        (envelope('{"x": "\\u0000"}'), "contains \\u0000"),
        (envelope('{"x": "\\ud800"}'), "lone surrogate"),
        (envelope('{"x": NaN}'), "NaN is not a JSON number"),
        (envelope('{"x": -Infinity}'), "-Infinity is not a JSON number"),
        (envelope('{"x": 1e400}'), "number 1e400 is out of range"),
        (envelope('{"x": ' + "9" * 5000 + "}"), "is not storable JSON"),
        (next(count_events(1, event_type="always_fails")).encode(), "always_fails failed"),
        (next(count_events(1, event_type="hangs")).encode(), "did not finish within 1s"),
        (
            next(count_events(1, event_type="hangs_in_postgres")).encode(),
            "did not finish within 1s",
        ),
    ]


async def test_hostile_values_and_stuck_handlers_are_dead_lettered_once_and_the_rest_applied(
    settings: Settings, database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    await create_counts_table(database_url)
    hostile = hostile_values()
    good = list(count_events(2 * len(hostile)))
    await clients.ensure_topics(settings, [settings.sync_topic])
    producer = clients.producer(settings)
    await producer.start()
    sent: dict[int, tuple[bytes | None, str]] = {}  # offset -> (value, reason)
    try:
        # One partition, each hostile value followed by two good events; the last
        # hostile record is a tombstone (a key and a null value).
        first_sent = await (await producer.send(settings.sync_topic, key=b"h:1", value=b"{}"))
        partition = first_sent.partition
        sent[first_sent.offset] = (b"{}", "field 'id': Field required")
        hostile.append((None, "the value is empty (a tombstone)"))
        good.extend(count_events(2, start=len(good)))
        for (value, reason), first, second in zip(hostile, good[::2], good[1::2], strict=True):
            meta = await (
                await producer.send(
                    settings.sync_topic, value=value, key=b"h:1", partition=partition
                )
            )
            sent[meta.offset] = (value, reason)
            for event in (first, second):
                await (
                    await producer.send(
                        settings.sync_topic, value=event.encode(), key=b"h:1", partition=partition
                    )
                )
    finally:
        await producer.stop()

    worker = WorkerProcess(
        env | {"CRONSTREAM_HANDLER_TIMEOUT": "1", "CRONSTREAM_HANDLER_ATTEMPTS": "2"},
        tmp_path,
        "worker",
    )
    worker.start()
    try:
        await wait_until_applied(settings, worker, 120)
    finally:
        worker.stop()
    assert_exactly_once(await applied_counts(database_url), [e.id for e in good])

    letters = await read_all(settings, settings.dlq_topic(settings.sync_topic), expected=len(sent))
    by_offset = {int(dict(letter.headers)[deadletter.OFFSET]): letter for letter in letters}
    assert len(letters) == len(by_offset) == len(sent), "each dead letter exactly once"
    for offset, (value, reason) in sent.items():
        letter = by_offset[offset]
        assert letter.value == value
        assert reason in dict(letter.headers)[deadletter.ERROR].decode()
    connection = await asyncpg.connect(database_url)
    try:
        recorded = await connection.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await connection.close()
    assert recorded == len(sent)


async def test_a_dead_letter_without_key_or_value_still_reaches_the_dlq(
    settings: Settings,
) -> None:
    """Kafka allows a record with neither (other clients write them); aiokafka does not."""
    dlq = settings.dlq_topic(settings.sync_topic)
    await clients.ensure_topics(settings, [dlq])
    producer = deadletter.DeadLetterProducer(settings)
    await producer.start()
    try:
        record = ConsumedRecord(settings.sync_topic, 0, 7, None, None, (("x-bad", b"\xff"),))
        await producer([DeadLetter(record, "the value is empty (a tombstone)", 1)])
    finally:
        await producer.stop()
    [letter] = await read_all(settings, dlq, expected=1)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (None, b"")
    assert headers[deadletter.VALUE_OMITTED] == b"the original value is null"
    assert headers[deadletter.OFFSET] == b"7"


async def test_a_dead_letter_sent_again_after_a_restart_carries_the_same_id(
    settings: Settings,
) -> None:
    """A crash between Kafka's ack and the COMMIT: the restarted worker (a new producer)
    sends the letter again, perhaps with another error; a reader of `.dlq` drops the copy
    by its `dlq.id`, and keeps another consumer's letter for the same record."""
    dlq = settings.dlq_topic(settings.sync_topic)
    await clients.ensure_topics(settings, [dlq])
    record = ConsumedRecord(settings.sync_topic, 1, 12, b"k", b"v", ())
    sends = [
        (settings.consumer_group, DeadLetter(record, "handler timed out", 3)),
        (settings.consumer_group, DeadLetter(record, "handler failed: boom", 1)),
        ("rebuild1", DeadLetter(record, "handler timed out", 3)),
    ]
    for consumer, dead in sends:
        producer = deadletter.DeadLetterProducer(settings, consumer)
        await producer.start()
        try:
            await producer([dead])
        finally:
            await producer.stop()
    letters = await read_all(settings, dlq, expected=3)
    in_order = sorted(letters, key=lambda r: r.offset)  # one key: one partition
    ids = [dict(letter.headers)[deadletter.ID] for letter in in_order]
    assert ids[0] == ids[1] != ids[2]
