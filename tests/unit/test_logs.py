"""Log levels and the text format: the pipeline's own lines stay readable at INFO."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronstream import logs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure() rewires the root logger; give the next test the logging it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = [*logs.LIBRARIES, "aiokafka.consumer.group_coordinator"]
    levels = {name: logging.getLogger(name).level for name in names}
    filters = logging.getLogger("aiokafka.consumer.group_coordinator").filters[:]
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
    logging.getLogger("aiokafka.consumer.group_coordinator").filters[:] = filters


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
            "streams.batches",
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
        "info    streams.batches: batch applied: 5 records, 4 applied, 1 duplicates, "
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
    for name in ("cronstream.cli", "schedulers.service", "streams.batches", "handlers.x"):
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name
    # A user's handler module logs at the chosen level too.
    assert logging.getLogger("myapp.handlers").isEnabledFor(logging.INFO)


def test_debug_brings_everything_back() -> None:
    logs.configure("debug", "text")
    for name in ("aiokafka.consumer.group_coordinator", "faust.transport", "streams.batches"):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_a_higher_level_applies_to_the_libraries_too() -> None:
    logs.configure("ERROR", "json")
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("streams.batches").isEnabledFor(logging.WARNING)


RETRIED: list[tuple[str, tuple[object, ...]]] = [
    ("Group Coordinator Request failed: %s", ("[Error 15] GroupCoordinatorNotAvailableError",)),
    ("Marking the coordinator dead (node %s)for group %s.", (1, "cronstream")),
]


@pytest.mark.parametrize(("msg", "args"), RETRIED)
def test_coordinator_errors_aiokafka_retries_show_only_under_debug(
    msg: str, args: tuple[object, ...]
) -> None:
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    entry = record(coordinator.name, logging.ERROR, msg, *args)
    logs.configure("INFO", "text")
    assert not coordinator.filter(entry)
    logs.configure("DEBUG", "text")
    assert coordinator.filter(entry)


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
