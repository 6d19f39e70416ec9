"""Real `cronstream worker` subprocesses for the stream tests, and what they applied."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.kafka import clients
from cronstream.streams import deadletter
from tests.integration.handlers_under_test import COUNTS_TABLE
from tests.integration.kafka_helpers import end_offsets, read_all, wait_for

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.integration.handlers_under_test"
BATCH_APPLIED = '"msg": "batch applied'


def worker_env(base: dict[str, str], engine: str = "batch", **extra: str) -> dict[str, str]:
    """Settings that make failover quick enough for tests, for one engine."""
    return (
        base
        | {
            "CRONSTREAM_ENGINE": engine,
            "CRONSTREAM_SESSION_TIMEOUT": "6",
            "CRONSTREAM_BATCH_SIZE": "200",
            "CRONSTREAM_BATCH_MAX_WAIT": "0.2",
            "CRONSTREAM_RETRY_BACKOFF": "0.05",
            "CRONSTREAM_SHUTDOWN_TIMEOUT": "20",
            "CRONSTREAM_LOG_LEVEL": "INFO",
            # Off unless a test picks a free port, so parallel workers never fight over 8080.
            "CRONSTREAM_HTTP_PORT": "0",
            "CRONSTREAM_SCHEDULER_HTTP_PORT": "0",
            "PYTHONPATH": str(ROOT),
        }
        | extra
    )


class WorkerProcess:
    """One `cronstream` process (the worker unless told otherwise), logging to its own file."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, name: str, args: list[str] | None = None
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.name = name
        self.args = args or ["worker", "--handlers", HANDLERS]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cronstream", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - began

    def stop(self) -> None:
        if self.alive():
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def batches_since_start(self) -> int:
        """How many batches the current process has applied, from its log."""
        if not self.starts or not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(BATCH_APPLIED)

    def applied_a_batch(self) -> bool:
        return self.batches_since_start() > 0

    def log_entries(self, prefix: str) -> list[dict[str, Any]]:
        """The JSON log lines, over every start, whose message starts with `prefix`."""
        found = []
        for line in self.logs().splitlines():
            if f'"msg": "{prefix}' in line:
                found.append(json.loads(line[line.index("{") :]))
        return found

    def duplicates_dropped(self) -> int:
        """Redelivered events dropped by the checkpoint filter, over every start."""
        return sum(entry["duplicates"] for entry in self.log_entries("batch applied"))

    def started_ahead_of_kafka(self) -> int:
        """Partitions started at a checkpoint that Kafka's committed offset lagged behind."""
        return sum(
            1
            for entry in self.log_entries("")
            if "kafka_committed" in entry
            and (entry["kafka_committed"] or 0) < entry["checkpoint"] + 1
        )

    def logs(self) -> str:
        return "\n".join(
            (self.log_dir / f"{self.name}-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )


def external_worker(base: dict[str, str], engine: str, topics: str, log_dir: Path) -> WorkerProcess:
    """A worker with the built-in handlers only, consuming `topics` too
    (CRONSTREAM_EXTERNAL_TOPICS, e.g. "t.dbz:debezium")."""
    env = worker_env(base, engine, CRONSTREAM_EXTERNAL_TOPICS=topics)
    return WorkerProcess(env, log_dir, "worker", args=["worker"])


def workers(env: dict[str, str], log_dir: Path, count: int) -> list[WorkerProcess]:
    return [WorkerProcess(env, log_dir, f"worker{n}") for n in range(count)]


async def create_counts_table(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(COUNTS_TABLE)
    finally:
        await connection.close()


def count_events(n: int, event_type: str = "count", start: int = 0) -> Iterator[Event]:
    run = uuid.uuid4().hex[:8]
    for i in range(start, start + n):
        yield Event.new(
            type=event_type,
            source="test",
            entity="item",
            key=i % 97,
            payload={"i": i},
            id=f"{run}-{i}",
        )


async def publish(
    settings: Settings, events: list[Event], chunk: int = 0, pause: float = 0.0
) -> list[str]:
    """Send events (in chunks with pauses, to keep a stream flowing); return their ids."""
    await clients.ensure_topics(settings, [settings.sync_topic])
    async with clients.started(clients.producer(settings)) as producer:
        step = chunk or len(events)
        for begin in range(0, len(events), step):
            await send_events(producer, settings.sync_topic, events[begin : begin + step])
            if pause:
                await asyncio.sleep(pause)
    return [e.id for e in events]


async def send_events(producer: AIOKafkaProducer, topic: str, events: list[Event]) -> None:
    """Send events and wait for every ack; the first failure fails the test."""
    await send_messages(
        producer, [clients.Message(topic, e.encode(), e.kafka_key, e.kafka_headers) for e in events]
    )


async def send_messages(producer: AIOKafkaProducer, messages: list[clients.Message]) -> None:
    """Send records, in order, and wait for every ack; the first failure fails the test."""
    for _, error in (await clients.send(producer, messages)).errors()[:1]:
        raise error


async def send_records(settings: Settings, messages: list[clients.Message]) -> None:
    """`send_messages` with a producer of its own."""
    async with clients.started(clients.producer(settings)) as producer:
        await send_messages(producer, messages)


async def publish_until(
    settings: Settings, done: asyncio.Event, chunk: int = 100, pause: float = 0.15
) -> list[str]:
    """Keep a stream of count events flowing until `done` is set; return their ids."""
    await clients.ensure_topics(settings, [settings.sync_topic])
    ids: list[str] = []
    async with clients.started(clients.producer(settings)) as producer:
        while not done.is_set():
            events = list(count_events(chunk, start=len(ids)))
            await send_events(producer, settings.sync_topic, events)
            ids += [e.id for e in events]
            await asyncio.sleep(pause)
    return ids


async def applied_counts(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT event_id, applied FROM event_counts")
        return {row["event_id"]: row["applied"] for row in rows}
    finally:
        await connection.close()


async def checkpoints_at_end(settings: Settings, topic: str) -> bool:
    """True when every partition's checkpoint is its last offset (never for a topic
    whose partitions the broker does not describe yet)."""
    ends = await end_offsets(settings, topic)
    done = await checkpoints(settings, topic)
    return bool(ends) and all(end == 0 or done.get(p) == end - 1 for p, end in ends.items())


async def wait_until_at_end(
    settings: Settings, worker: WorkerProcess, topic: str, seconds: float
) -> None:
    """Wait until `worker` checkpointed all of `topic`; fail at once, with its log, if it exits."""

    async def at_end() -> bool:
        assert worker.alive(), f"worker exited:\n{worker.logs()[-3000:]}"
        return await checkpoints_at_end(settings, topic)

    await wait_for(at_end, seconds, f"the checkpoints of {topic} to reach its end")


async def assert_dead_lettered(settings: Settings, topic: str, reasons: dict[int, str]) -> None:
    """`topic`'s dead-letter topic holds the records at exactly these offsets, each with
    an error that contains its reason and the id a reader drops resent copies by."""
    letters = await read_all(settings, settings.dlq_topic(topic), expected=len(reasons))
    found = {
        int(dict(letter.headers)[deadletter.OFFSET]): dict(letter.headers)[deadletter.ERROR]
        for letter in letters
    }
    assert found.keys() == reasons.keys(), found
    for letter in letters:
        headers = dict(letter.headers)
        where = (topic, int(headers[deadletter.PARTITION]), int(headers[deadletter.OFFSET]))
        expected = deadletter.letter_id(settings.consumer_group, *where)
        assert headers[deadletter.ID].decode() == expected, headers
    for offset, reason in reasons.items():
        assert reason in found[offset].decode(), found[offset]


def assert_exactly_once(counts: dict[str, int], ids: list[str]) -> None:
    missing = [i for i in ids if i not in counts]
    doubled = {i: n for i, n in counts.items() if n != 1}
    assert not missing, f"{len(missing)} events never applied, e.g. {missing[:5]}"
    assert not doubled, (
        f"{len(doubled)} events applied more than once, e.g. {list(doubled.items())[:5]}"
    )
    assert len(counts) == len(ids)


async def kafka_committed(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    """The consumer group's committed offsets in Kafka (-1 where none)."""
    consumer = AIOKafkaConsumer(
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        **clients.connection_options(settings),
    )
    try:
        await consumer.start()  # inside: a cancelled start must still stop it
        found = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            found[p] = -1 if offset is None else offset
        return found
    finally:
        await consumer.stop()


async def checkpoints(settings: Settings, topic: str) -> dict[int, int]:
    connection = await asyncpg.connect(settings.database_dsn)
    try:
        rows = await connection.fetch(
            'SELECT partition, "offset" FROM checkpoints WHERE consumer = $1 AND topic = $2',
            settings.consumer_group,
            topic,
        )
    finally:
        await connection.close()
    return {row["partition"]: row["offset"] for row in rows}


async def commit_offsets(settings: Settings, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets for the worker's group by hand, as an operator's tool would."""
    consumer = AIOKafkaConsumer(
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        **clients.connection_options(settings),
    )
    try:
        await consumer.start()  # inside: a cancelled start must still stop it
        chosen = {TopicPartition(topic, p): o for p, o in offsets.items() if o}
        consumer.assign(list(chosen))  # a commit outside a group generation needs this
        await consumer.commit(chosen)
    finally:
        await consumer.stop()
