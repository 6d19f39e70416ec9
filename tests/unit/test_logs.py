"""Log levels and the text format: the pipeline's own lines stay readable at INFO."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    UnknownTopicOrPartitionError,
)

from cronstream.kafka import health as kafka_health
from cronstream.kafka.health import Degraded, HeldBack, KafkaHealth, Recovered
from cronstream.runtime import logs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure() rewires the root logger; give the next test the logging it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = [*logs.LIBRARIES, *kafka_health.RETRIED]
    levels = {name: logging.getLogger(name).level for name in names}
    filters = {name: logging.getLogger(name).filters[:] for name in names}
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
        logging.getLogger(name).filters[:] = filters[name]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("DEBUG", logging.DEBUG),
        ("info", logging.INFO),
        (" Warning ", logging.WARNING),
        ("error", logging.ERROR),
        ("CRITICAL", logging.CRITICAL),
    ],
)
def test_level_names_in_any_case(text: str, level: int) -> None:
    assert logs.parse_level(text) == level


@pytest.mark.parametrize("text", ["LOUD", "", "10", "WARN ING", "NOTSET", "info;"])
def test_a_bad_level_is_refused_naming_the_choices(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a log level \(use DEBUG, INFO, WARNING"):
        logs.parse_level(text)


def record(name: str, level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    entry.__dict__.update(extra)
    return entry


def test_text_shows_the_batch_counts() -> None:
    line = logs.TextFormatter().format(
        record(
            "cronstream.streams.batches",
            logging.INFO,
            "batch applied: %d records, %d applied, %d duplicates, %d dead-lettered",
            5,
            4,
            1,
            0,
            events=5,
            applied=4,
            duplicates=1,
            dead_lettered=0,
        )
    )
    # The message carries the counts; the same values are not repeated as key=value.
    assert line == (
        "info    cronstream.streams.batches: batch applied: 5 records, 4 applied, 1 duplicates, "
        "0 dead-lettered"
    )


def test_text_appends_the_fields_the_message_does_not_show() -> None:
    line = logs.TextFormatter().format(
        record(
            "cronstream.cli",
            logging.INFO,
            "worker starting",
            engine="batch",
            group="cronstream",
            trace_id="t1",
        )
    )
    assert (
        line == "info    cronstream.cli: worker starting engine=batch group=cronstream trace_id=t1"
    )


def test_default_level_quiets_the_libraries_not_ours_nor_the_users() -> None:
    logs.configure("INFO", "text")
    for name in ("aiokafka.consumer.group_coordinator", "faust.transport", "mode.services"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    for name in (
        "cronstream.cli",
        "cronstream.schedulers.service",
        "cronstream.streams.batches",
        "cronstream.handlers.x",
    ):
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name
    # A user's handler module logs at the chosen level too.
    assert logging.getLogger("myapp.handlers").isEnabledFor(logging.INFO)


def test_debug_brings_everything_back() -> None:
    logs.configure("debug", "text")
    for name in (
        "aiokafka.consumer.group_coordinator",
        "faust.transport",
        "cronstream.streams.batches",
    ):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_a_higher_level_applies_to_the_libraries_too() -> None:
    logs.configure("ERROR", "json")
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("cronstream.streams.batches").isEnabledFor(logging.WARNING)


RETRIED: list[tuple[str, tuple[object, ...]]] = [
    ("Group Coordinator Request failed: %s", ("[Error 15] GroupCoordinatorNotAvailableError",)),
    ("Marking the coordinator dead (node %s)for group %s.", (1, "cronstream")),
]


@pytest.mark.parametrize(("msg", "args"), RETRIED)
def test_coordinator_errors_aiokafka_retries_show_only_under_debug(
    msg: str, args: tuple[object, ...]
) -> None:
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    logs.configure("INFO", "text")
    assert not coordinator.filter(record(coordinator.name, logging.ERROR, msg, *args))
    # What every first start on a new broker logs is no outage: nothing to tell.
    health = KafkaHealth()
    assert not HeldBack(health).filter(record(coordinator.name, logging.ERROR, msg, *args))
    assert health.held_back == 0 and health.check() is None
    logs.configure("DEBUG", "text")
    assert coordinator.filter(record(coordinator.name, logging.ERROR, msg, *args))


def test_other_coordinator_errors_still_show() -> None:
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    logs.configure("INFO", "text")
    assert coordinator.filter(
        record(coordinator.name, logging.ERROR, "Heartbeat failed: %r", "GroupAuthorizationFailed")
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--log-level", "LOUD"], {}),
        (["--log-level", ""], {}),
        ([], {"CRONSTREAM_LOG_LEVEL": "LOUD"}),
        ([], {"CRONSTREAM_LOG_LEVEL": "verbose"}),
    ],
)
def test_a_bad_log_level_is_one_line_and_exit_2(args: list[str], env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRONSTREAM_")}
    result = subprocess.run(
        [sys.executable, "-m", "cronstream", *args, "jobs", "next", "* * * * *", "--count", "1"],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: --log-level (CRONSTREAM_LOG_LEVEL): ")
    assert "is not a log level (use DEBUG, INFO, WARNING, ERROR, CRITICAL)" in lines[0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_degraded_once_then_recovered_once_after_a_quiet_spell() -> None:
    clock = Clock()
    health = KafkaHealth(quiet=5.0, clock=clock)
    assert health.check() is None  # nothing heard: nothing to say
    health.failed(node=1)
    assert health.check() == Degraded(frozenset({1}), frozenset())
    for _ in range(50):  # aiokafka retrying every 0.3 s for 15 s
        clock.now += 0.3
        health.failed(address="127.0.0.1:9092")
        assert health.check() is None
    clock.now += 4.9
    assert health.check() is None  # not quiet for long enough yet
    clock.now += 0.1
    assert health.check() == Recovered(seconds=15.0, held_back=51)
    clock.now += 60
    assert health.check() is None  # said once
    health.failed(node=2)  # the next outage is told again
    assert health.check() == Degraded(frozenset({2}), frozenset())


def test_what_follows_a_stalled_loop_is_forgotten_but_an_outage_is_still_told() -> None:
    clock = Clock()
    health = KafkaHealth(quiet=5.0, clock=clock)
    since = clock.now
    clock.now += 8  # a handler blocked the loop for 8 s
    health.failed()  # "Heartbeat session expired", as the loop runs again
    health.stalled(since)  # the watch's tick, late
    clock.now += 1
    health.failed()  # still the stall's: within SETTLE
    assert health.check() is None and health.held_back == 0
    for _ in range(5):  # a broker away goes on failing
        clock.now += 0.5
        health.failed(node=1)
    assert health.check() == Degraded(frozenset({1}), frozenset())


def test_an_outage_heard_before_a_stall_is_kept() -> None:
    clock = Clock()
    health = KafkaHealth(quiet=5.0, clock=clock)
    health.failed(node=1)
    clock.now += 0.5
    since = clock.now
    clock.now += 8
    health.stalled(since)
    assert health.check() == Degraded(frozenset({1}), frozenset())


async def test_watch_tells_a_stall_to_the_tracker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka_health, "WATCH_INTERVAL", 0.02)
    monkeypatch.setattr(kafka_health, "STALL", 0.3)
    health = KafkaHealth()
    watching = asyncio.create_task(kafka_health.watch("127.0.0.1:9092", health=health))
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.5)  # noqa: ASYNC251 (a handler blocking the event loop, on purpose)
        health.failed()  # what aiokafka says as the loop runs again
        await asyncio.sleep(0.2)
        assert health.forgiven_until > health.clock()
        assert health.first_error is None
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    assert "Kafka degraded" not in caplog.text


# What aiokafka 0.14 logs on each retry while a broker is away (measured during a broker
# restart), and what the tracker learns of each: a node id, a bootstrap address or nothing.
RETRIED_BY_AIOKAFKA: list[tuple[str, str, tuple[object, ...], int | None, str | None]] = [
    (
        "aiokafka",
        "Unable connect to node with id %s: %s",
        (1, ConnectionRefusedError(111, "Connect call failed")),
        1,
        None,
    ),
    (
        "aiokafka",
        'Unable connect to "%s:%s": %s',
        ("127.0.0.1", 9092, TimeoutError()),
        None,
        "127.0.0.1:9092",
    ),
    ("aiokafka", "Unable to update metadata from %s", ([1],), None, None),
    (
        "aiokafka",
        "Unable to request metadata from node with id %s: %r",
        (3, KafkaConnectionError("Connection at 127.0.0.1:9092 closed")),
        3,
        None,
    ),
    (
        "aiokafka.consumer.fetcher",
        "Failed fetch messages from %s: %s",
        (2, NodeNotReadyError("not ready")),
        2,
        None,
    ),
    (
        "aiokafka.consumer.fetcher",
        "Failed fetch offsets from %s: %s",
        (2, RequestTimedOutError()),
        2,
        None,
    ),
    (
        "aiokafka.consumer.group_coordinator",
        "Group Coordinator Request failed: %s",
        ("NodeNotReadyError",),
        None,
        None,
    ),
    (
        "aiokafka.consumer.group_coordinator",
        "Heartbeat session expired - marking coordinator dead",
        (),
        None,
        None,
    ),
    (
        "aiokafka.consumer.group_coordinator",
        "Heartbeat send request failed: %s. Will retry.",
        ("x",),
        None,
        None,
    ),
    (
        "aiokafka.consumer.group_coordinator",
        "Error sending %s to node %s [%s] -- marking coordinator dead",
        ("HeartbeatRequest", 1, "NodeNotReadyError"),
        1,
        None,
    ),
    ("aiokafka.producer.sender", "Cannot send %r to %s: %r", ("ProduceRequest", 1, "x"), 1, None),
    (
        "aiokafka.producer.sender",
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        ("tp", "NotLeader"),
        None,
        None,
    ),
]


@pytest.mark.parametrize(("name", "msg", "args", "node", "address"), RETRIED_BY_AIOKAFKA)
def test_aiokafkas_retried_connection_errors_are_demoted_and_tracked(
    name: str, msg: str, args: tuple[object, ...], node: int | None, address: str | None
) -> None:
    health = KafkaHealth()
    held_back = HeldBack(health)
    logs.configure("INFO", "json")
    entry = record(name, logging.ERROR, msg, *args)
    assert not held_back.filter(entry)  # below the libraries' WARNING: not shown
    assert entry.levelname == "DEBUG"
    assert health.held_back == 1
    assert health.nodes == ({node} if node is not None else set())
    assert health.addresses == ({address} if address is not None else set())
    logs.configure("DEBUG", "json")
    assert held_back.filter(record(name, logging.ERROR, msg, *args))  # shown, as DEBUG


# A broker's answers in the same templates: aiokafka retries them, but the broker is
# there. The first is what a worker on a topic it had just created logged (a new
# partition led in the metadata, not yet on the broker), and was told as an outage.
ANSWERED: list[tuple[str, str, tuple[object, ...]]] = [
    (
        "aiokafka.consumer.fetcher",
        "Failed fetch offsets from %s: %s",
        (1, NotLeaderForPartitionError(TopicPartition("t", 0))),
    ),
    (
        "aiokafka.consumer.fetcher",
        "Failed fetch offsets from %s: %s",
        (1, UnknownTopicOrPartitionError(TopicPartition("t", 0))),
    ),
    (
        "aiokafka.consumer.fetcher",
        "Failed fetch offsets from %s: %s",
        (1, LeaderNotAvailableError()),
    ),
    (
        "aiokafka.producer.sender",
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        (TopicPartition("t", 0), NotLeaderForPartitionError),  # aiokafka passes the class
    ),
    (
        "aiokafka.consumer.group_coordinator",
        "Heartbeat failed for group %s: coordinator (node %s) is either not started or not valid",
        ("g", 1),
    ),
]


@pytest.mark.parametrize(("name", "msg", "args"), ANSWERED)
def test_a_brokers_retried_answer_is_held_back_but_is_no_outage(
    name: str, msg: str, args: tuple[object, ...]
) -> None:
    health = KafkaHealth()
    logs.configure("INFO", "json")
    entry = record(name, logging.ERROR, msg, *args)
    assert not HeldBack(health).filter(entry)
    assert entry.levelname == "DEBUG"
    assert health.held_back == 0 and health.check() is None


NOT_AN_OUTAGE: list[tuple[str, int, str, tuple[object, ...]]] = [
    (  # an answer aiokafka does not retry is the user's to see
        "aiokafka",
        logging.ERROR,
        "Unable connect to node with id %s: %s",
        (1, SaslAuthenticationFailed("bad password")),
    ),
    (
        "aiokafka.consumer.group_coordinator",
        logging.WARNING,
        "Heartbeat failed for group %s because it is rebalancing",
        ("g",),
    ),
    (
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        "Heartbeat failed: %r",
        ("GroupAuthorizationFailed",),
    ),
    ("aiokafka", logging.ERROR, "Topic %s is not authorized for this client", ("t",)),
    ("aiokafka.consumer.fetcher", logging.WARNING, "Not authorized to read from topic %s.", ("t",)),
    ("aiokafka.consumer.fetcher", logging.DEBUG, "Failed fetch messages from %s: %s", (1, "x")),
    ("cronstream.streams.batches", logging.ERROR, "Failed fetch messages from %s: %s", (1, "x")),
]


@pytest.mark.parametrize(("name", "level", "msg", "args"), NOT_AN_OUTAGE)
def test_other_library_lines_pass_untouched_and_untracked(
    name: str, level: int, msg: str, args: tuple[object, ...]
) -> None:
    health = KafkaHealth()
    entry = record(name, level, msg, *args)
    assert HeldBack(health).filter(entry)
    assert entry.levelno == level
    assert health.held_back == 0


def test_configure_keeps_retried_errors_out_of_the_log_and_tells_the_tracker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("INFO", "text")
    before = kafka_health.HEALTH.held_back
    logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 7, "refused")
    logging.getLogger("aiokafka").error("Topic %s is not authorized for this client", "t")
    shown = capsys.readouterr().err.splitlines()
    assert shown == ["error   aiokafka: Topic t is not authorized for this client"]
    assert kafka_health.HEALTH.held_back == before + 1
    assert 7 in kafka_health.HEALTH.nodes


def test_a_child_process_logs_as_its_parent_with_its_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("DEBUG", "text")
    assert logs.current() == ("DEBUG", "text")
    logs.configure(*logs.current()[:1], "json", fields={"worker_process": 2})
    assert logs.current() == ("DEBUG", "json")
    logging.getLogger("cronstream.test").info("applied")
    line = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert (line["msg"], line["worker_process"]) == ("applied", 2)
