"""Replay planning: option validation and range resolution, without services."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cronstream.cli import app
from cronstream.cli.replay import resume_command
from cronstream.config.settings import Settings
from cronstream.runtime.names import is_identifier
from cronstream.streams.replay import (
    Asked,
    PartitionPlan,
    ReplayError,
    check,
    offset_range,
    parse_partitions,
    schema_for,
    to_millis,
)
from cronstream.streams.replay.rebuild import check_dlq_topic, rebuild_dlq_topic

runner = CliRunner()
LIVE = "cronstream"


def asked(**options: Any) -> Asked:
    return Asked(**{"topic": "t"} | options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of --from-offset, --from-time, --from-beginning"),
        ({"from_offset": 1, "from_beginning": True}, "exactly one of"),
        ({"from_offset": 1, "from_time": "2026-01-01T00:00:00+00:00"}, "exactly one of"),
        ({"from_offset": -1}, "--from-offset -1 is negative"),
        ({"from_beginning": True, "to_offset": -5}, "--to-offset -5 is negative"),
        ({"from_offset": 9, "to_offset": 3}, "--from-offset 9 is after --to-offset 3"),
        ({"from_beginning": True, "to_offset": 3, "to_time": "2026-01-01T00:00Z"}, "at most one"),
        ({"from_time": "yesterday"}, "--from-time 'yesterday' is not an ISO 8601 time"),
        ({"from_time": "2026-01-01T00:00:00"}, "needs a UTC offset"),
        ({"from_beginning": True, "to_time": "2026-01-01T00:00"}, "--to-time .* needs a UTC"),
        ({"from_time": "1960-01-01T00:00:00+00:00"}, "before 1970"),
        (
            {"from_time": "2026-01-02T00:00:00+00:00", "to_time": "2026-01-01T00:00:00+00:00"},
            "is not before --to-time",
        ),
        ({"from_beginning": True, "rate_limit": 0}, "--rate-limit 0 must be a positive"),
        ({"from_beginning": True, "rate_limit": -3.5}, "--rate-limit -3.5 must be a positive"),
        ({"from_beginning": True, "rate_limit": float("nan")}, "must be a positive"),
        ({"from_beginning": True, "partitions": "0,x"}, "'x' is not a partition"),
        ({"from_beginning": True, "partitions": "-1"}, "'-1' is not a partition"),
        ({"from_beginning": True, "partitions": "1,1"}, "partition 1 is given twice"),
        ({"from_beginning": True, "partitions": ""}, "'' is not a partition"),
        ({"from_beginning": True, "partitions": "\u0661"}, "is not a partition"),
        ({"from_beginning": True, "consumer": LIVE}, "is the live consumer group"),
        ({"from_beginning": True, "consumer": " "}, "--consumer must name a consumer"),
        ({"from_beginning": True, "schema": "s"}, "give --consumer NAME"),
        ({"from_beginning": True, "like": ["t"]}, "give --consumer NAME"),
        ({"from_beginning": True, "consumer": "r", "schema": 'a"b'}, "not a plain SQL identifier"),
        ({"from_beginning": True, "consumer": "r", "schema": "a.b"}, "not a plain SQL identifier"),
        ({"from_beginning": True, "consumer": "r", "schema": "pg_temp"}, "is a system schema"),
        ({"from_beginning": True, "consumer": "r", "like": ["x;drop"]}, "--like 'x;drop' is not"),
        ({"from_beginning": True, "consumer": "r", "like": ["a.b.c"]}, "--like 'a.b.c' is not"),
        ({"topic": " ", "from_beginning": True}, "--topic must name a topic"),
    ],
)
def test_invalid_options_are_refused_in_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayError, match=message) as raised:
        check(asked(**options), LIVE)
    assert "\n" not in str(raised.value)


def test_rebuild_defaults_its_schema_and_tables() -> None:
    request = check(asked(from_beginning=True, consumer="rebuild.2026-11"), LIVE)
    assert (request.mode, request.schema, request.like) == (
        "rebuild",
        schema_for("rebuild.2026-11"),
        ("entity_projection",),
    )
    assert check(asked(from_offset=0), LIVE).mode == "re-apply"


@pytest.mark.parametrize(
    ("consumer", "readable"),
    [
        ("rebuild1", "rebuild1_"),
        ("Re-Build", "re_build_"),
        ("2026", "r_2026_"),
        ("pg_x", "r_pg_x_"),
        ("ünïcode; DROP", "_n_code__drop_"),
        ("x" * 300, "x" * 52 + "_"),
    ],
)
def test_default_schema_is_a_readable_valid_identifier(consumer: str, readable: str) -> None:
    schema = schema_for(consumer)
    assert schema.startswith(readable) and re.fullmatch(r"[0-9a-f]{10}", schema[len(readable) :])
    assert is_identifier(schema, qualified=False) and len(schema.encode()) <= 63
    assert check(asked(from_beginning=True, consumer=consumer), LIVE).schema == schema


# Names that read alike once made identifiers, each pair once sharing a schema.
ALIKE = [
    ("orders-v2", "orders.v2"),
    ("Orders", "orders"),
    ("orders v2", "orders_v2"),
    ("a" * 63 + "-blue", "a" * 63 + "-green"),  # alike in their first 63 characters
    ("a" * 52 + "1", "a" * 52 + "2"),  # alike in the readable part kept
]


@pytest.mark.parametrize(("one", "other"), ALIKE)
def test_consumers_that_read_alike_get_schemas_of_their_own(one: str, other: str) -> None:
    assert schema_for(one) != schema_for(other)


def test_default_schema_is_the_same_in_every_run() -> None:
    """A hash of the name (not Python's per-process hash()): a rebuild run again, from
    another process or host, goes on in the schema it began."""
    assert schema_for("orders-v2") == "orders_v2_abd2eeb2fd"
    assert schema_for("Orders") == "orders_b7e8acdd52"


def test_partitions_are_sorted() -> None:
    assert parse_partitions("3, 0") == (0, 3)


def test_times_round_up_to_kafka_milliseconds() -> None:
    moment = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    base = int(moment.timestamp() * 1000)
    assert to_millis(moment) == base
    assert to_millis(moment + timedelta(microseconds=1)) == base + 1
    assert to_millis(moment.astimezone(UTC).replace(tzinfo=UTC)) == base


@pytest.mark.parametrize(
    ("log", "first", "last", "expected"),
    [
        ((0, 10), 0, None, range(0, 10)),  # from the beginning to the end
        ((0, 10), 3, 5, range(3, 6)),  # inclusive end
        ((4, 10), 0, None, range(4, 10)),  # older records are gone: from the log start
        ((0, 10), 2, 99, range(2, 10)),  # never past the end captured at the start
        ((0, 10), 12, None, range(12, 12)),  # starts after the end: nothing
        ((0, 10), None, None, range(10, 10)),  # no record since --from-time: nothing
        ((0, 10), 5, 4, range(5, 5)),  # --to-time before the first record: nothing
        ((0, 0), 0, None, range(0, 0)),  # empty partition
        ((6, 10), 0, 3, range(6, 6)),  # the range was deleted by retention
    ],
)
def test_offset_range(
    log: tuple[int, int], first: int | None, last: int | None, expected: range
) -> None:
    assert offset_range(*log, first, last) == expected


@pytest.mark.parametrize(
    ("offsets", "checkpoint", "text"),
    [
        (
            range(3, 8),
            9,
            "offsets 3..7, 5 records; re-applies 5 at or below checkpoint 9, "
            "applies 0 above it (checkpoint 9 -> 9)",
        ),
        (
            range(3, 8),
            4,
            "offsets 3..7, 5 records; re-applies 2 at or below checkpoint 4, "
            "applies 3 above it (checkpoint 4 -> 7)",
        ),
        (
            range(0, 5),
            -1,
            "offsets 0..4, 5 records; re-applies 0 at or below checkpoint -1, "
            "applies 5 above it (checkpoint -1 -> 4)",
        ),
        (
            range(5, 5),
            2,
            "offsets none, 0 records; re-applies 0 at or below checkpoint 2, "
            "applies 0 above it (checkpoint 2 -> 2)",
        ),
    ],
)
def test_reapply_plan_says_what_is_applied_again(
    offsets: range, checkpoint: int, text: str
) -> None:
    assert (
        PartitionPlan(1, offsets, checkpoint).describe("re-apply", LIVE) == f"partition 1: {text}"
    )


def test_rebuild_plan_names_its_own_checkpoint() -> None:
    fresh = PartitionPlan(0, range(0, 10), -1)
    assert fresh.describe("rebuild", "r1").endswith("consumer r1 checkpoint -1 -> 9")
    resumed = PartitionPlan(0, range(0, 10), 3)
    assert resumed.describe("rebuild", "r1").endswith(
        "consumer r1 checkpoint 3 -> 9, skips 4 at or below it (done before)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-beginning"], "--topic is required"),
        (["--topic", "t"], "exactly one of"),
        (["--topic", "t", "--from-time", "2026-11-27T10:00"], "needs a UTC offset"),
        (["--topic", "t", "--from-beginning", "--rate-limit", "0"], "must be a positive"),
        (["--topic", "t", "--from-beginning", "--consumer", LIVE], "live consumer group"),
    ],
)
def test_cli_refuses_bad_options_before_connecting(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["replay", *args], env={"CRONSTREAM_CONSUMER_GROUP": LIVE})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert message in result.output
    assert result.output.count("\n") == 1


def test_help_names_both_modes() -> None:
    result = runner.invoke(app, ["replay", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "re-apply" in result.output
    assert "rebuild" in result.output


def test_resume_command_names_the_replay_and_the_formats_quoted_for_the_shell() -> None:
    assert shlex.split(resume_command(12, "cdc:debezium, x")) == [
        "cronstream", "replay", "--resume", "12", "--external-topics", "cdc:debezium, x",
    ]  # fmt: skip
    assert resume_command(7, None) == "cronstream replay --resume 7"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--topic", "t"], "--topic"),
        (["--from-beginning"], "--from-beginning"),
        (["--handlers", "m"], "--handlers"),
        (["--consumer", "r1"], "--consumer"),
    ],
)
def test_resume_refuses_options_of_its_own_before_connecting(args: list[str], option: str) -> None:
    result = runner.invoke(app, ["replay", "--resume", "3", *args])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: --resume 3 replays with its recorded options: drop {option}\n"


def test_a_rebuild_dead_letters_to_a_topic_of_its_own_per_consumer() -> None:
    settings = Settings(consumer_group=LIVE)
    name = rebuild_dlq_topic(settings, "orders v2/ü")("orders")
    assert name == f"orders.rebuild.{schema_for('orders v2/ü')}.dlq"
    assert re.fullmatch(r"[a-zA-Z0-9._-]+", name), "a valid Kafka topic name"
    assert rebuild_dlq_topic(settings, "orders.v2")("orders") != rebuild_dlq_topic(
        settings, "orders-v2"
    )("orders")
    custom = Settings(consumer_group=LIVE, dlq_suffix="-dead")
    assert rebuild_dlq_topic(custom, "r1")("t") == f"t.rebuild.{schema_for('r1')}-dead"


def test_a_rebuild_whose_dead_letter_topic_is_live_or_too_long_is_refused() -> None:
    clash = f"t.rebuild.{schema_for('r1')}"
    settings = Settings(consumer_group=LIVE, sync_topic=clash)
    request = check(asked(from_beginning=True, consumer="r1"), LIVE)
    with pytest.raises(ReplayError, match=f"dead-letter topic {clash}.dlq is a live topic"):
        check_dlq_topic(settings, request)
    check_dlq_topic(Settings(consumer_group=LIVE), request)
    long = check(asked(topic="t" * 240, from_beginning=True, consumer="r1"), LIVE)
    with pytest.raises(ReplayError, match="Kafka's limit is 249"):
        check_dlq_topic(Settings(consumer_group=LIVE), long)
