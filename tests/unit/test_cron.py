"""Cron semantics, with DST days in Europe/Berlin and America/New_York."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from typer.testing import CliRunner

from cronstream.cli import app
from cronstream.schedulers.cron import CronError, Schedule, shortest_interval


def fires(expression: str, tz: str, after: str, count: int) -> list[str]:
    schedule = Schedule(expression, tz)
    return [
        t.astimezone(schedule.tz).isoformat()
        for t in schedule.fire_times(datetime.fromisoformat(after), count)
    ]


def test_six_fields_put_seconds_first_and_accept_question_marks() -> None:
    assert fires("0/30 * * * * ?", "UTC", "2027-01-01T00:00:00+00:00", 3) == [
        "2027-01-01T00:00:30+00:00",
        "2027-01-01T00:01:00+00:00",
        "2027-01-01T00:01:30+00:00",
    ]
    assert fires("15 30 2 ? * *", "UTC", "2027-01-01T00:00:00+00:00", 1) == [
        "2027-01-01T02:30:15+00:00"
    ]


def test_aliases() -> None:
    assert fires("@daily", "UTC", "2027-01-01T10:00:00+00:00", 1) == ["2027-01-02T00:00:00+00:00"]
    assert fires("@hourly", "UTC", "2027-01-01T10:00:00+00:00", 1) == ["2027-01-01T11:00:00+00:00"]


def test_strictly_after() -> None:
    assert fires("0 12 * * *", "UTC", "2027-01-01T12:00:00+00:00", 1) == [
        "2027-01-02T12:00:00+00:00"
    ]


def test_fixed_time_in_skipped_hour_runs_once_right_after_the_jump_berlin() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00+01:00", 2) == [
        "2027-03-28T03:00:00+02:00",
        "2027-03-29T02:30:00+02:00",
    ]


def test_fixed_time_in_skipped_hour_new_york() -> None:
    assert fires("30 2 * * *", "America/New_York", "2027-03-13T12:00:00-05:00", 2) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
    ]


def test_several_fixed_times_in_the_skipped_hour_run_once() -> None:
    assert fires("0,20,40 2 * * *", "Europe/Berlin", "2027-03-28T01:00:00+01:00", 2) == [
        "2027-03-28T03:00:00+02:00",
        "2027-03-29T02:00:00+02:00",
    ]


def test_fixed_time_in_repeated_hour_runs_once_at_the_first_occurrence() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00+02:00", 2) == [
        "2027-10-31T02:30:00+02:00",
        "2027-11-01T02:30:00+01:00",
    ]
    # New York repeats 01:00-02:00, so a daily 02:30 is unaffected on its fall-back day.
    assert fires("30 2 * * *", "America/New_York", "2027-11-06T12:00:00-04:00", 2) == [
        "2027-11-07T02:30:00-05:00",
        "2027-11-08T02:30:00-05:00",
    ]
    assert fires("30 1 * * *", "America/New_York", "2027-11-06T12:00:00-04:00", 2) == [
        "2027-11-07T01:30:00-04:00",
        "2027-11-08T01:30:00-05:00",
    ]


def test_fixed_time_from_inside_the_repeated_hour_does_not_run_again() -> None:
    # Already past the first 02:30; the second copy of 02:30 must not fire.
    assert fires("30 2 * * *", "Europe/Berlin", "2027-10-31T02:40:00+02:00", 1) == [
        "2027-11-01T02:30:00+01:00"
    ]


def test_every_15_minutes_has_no_runs_in_the_skipped_hour_berlin() -> None:
    assert fires("*/15 * * * *", "Europe/Berlin", "2027-03-28T01:30:00+01:00", 4) == [
        "2027-03-28T01:45:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-28T03:15:00+02:00",
        "2027-03-28T03:30:00+02:00",
    ]


def test_every_15_minutes_runs_in_both_copies_of_the_repeated_hour_berlin() -> None:
    assert fires("*/15 * * * *", "Europe/Berlin", "2027-10-31T01:50:00+02:00", 9) == [
        "2027-10-31T02:00:00+02:00",
        "2027-10-31T02:15:00+02:00",
        "2027-10-31T02:30:00+02:00",
        "2027-10-31T02:45:00+02:00",
        "2027-10-31T02:00:00+01:00",
        "2027-10-31T02:15:00+01:00",
        "2027-10-31T02:30:00+01:00",
        "2027-10-31T02:45:00+01:00",
        "2027-10-31T03:00:00+01:00",
    ]


def test_every_15_minutes_new_york_both_transitions() -> None:
    assert fires("*/15 * * * *", "America/New_York", "2027-03-14T01:40:00-05:00", 2) == [
        "2027-03-14T01:45:00-05:00",
        "2027-03-14T03:00:00-04:00",
    ]
    got = fires("*/15 * * * *", "America/New_York", "2027-11-07T01:40:00-04:00", 6)
    assert got == [
        "2027-11-07T01:45:00-04:00",
        "2027-11-07T01:00:00-05:00",
        "2027-11-07T01:15:00-05:00",
        "2027-11-07T01:30:00-05:00",
        "2027-11-07T01:45:00-05:00",
        "2027-11-07T02:00:00-05:00",
    ]


@pytest.mark.parametrize("start", ["2027-03-20T00:00:00+00:00", "2027-10-24T00:00:00+00:00"])
def test_fire_times_strictly_increase_across_dst_changes(start: str) -> None:
    times = Schedule("*/20 * * * *", "Europe/Berlin").fire_times(
        datetime.fromisoformat(start), 3 * 24 * 14
    )
    assert all(a < b for a, b in pairwise(times))


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("61 * * * *", "UTC", "not a valid cron expression"),
        ("* * *", "UTC", "expected 5 fields"),
        ("@sometimes", "UTC", "expected 5 fields"),
        ("* * * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        # Accepted by croniter, which then fails on every step: refused up front.
        ("0 0 30 2 *", "UTC", "'0 0 30 2 \\*' never fires"),
        ("* * 31 2 *", "UTC", "never fires"),
        ("0 0 31 4 *", "UTC", "never fires"),
        ("0 0 31 2,4,6 *", "UTC", "never fires"),
        ("0 0 0 30 2 ?", "Europe/Berlin", "never fires"),
        ("\uff15 * * * *", "UTC", "printable ASCII"),
        ("\x00 * * * *", "UTC", r"'\\x00 \* \* \* \*': expected at most"),
        ("0 0 * * *\n", "UTC", "printable ASCII"),
        ("1," * 200 + "2 * * * *", "UTC", "at most 200"),
        ("* * * * *", "America", "unknown time zone 'America'"),  # a folder of zones
        ("* * * * *", "x" * 5000, "unknown time zone"),  # too long for a file name
        ("* * * * *", "UTC\n", r"unknown time zone 'UTC\\n'"),
        ("* * * * *", "../../etc/passwd", "unknown time zone"),
    ],
)
def test_invalid_input_is_one_clear_error(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(CronError, match=message) as raised:
        Schedule(expression, timezone)
    assert "\n" not in str(raised.value)


def test_a_rare_but_real_date_is_accepted() -> None:
    assert fires("0 0 29 2 *", "UTC", "2027-01-01T00:00:00+00:00", 2) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]


def test_no_fire_time_before_year_9999_is_a_cron_error() -> None:
    with pytest.raises(CronError, match="no fire time after 9999-12-31"):
        Schedule("* * * * *").next_after(datetime(9999, 12, 31, 23, 59, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    ("expression", "timezone", "after"),
    [
        ("*/15 * * * *", "Europe/Berlin", "2027-10-30T22:00:00+00:00"),  # a repeated hour
        ("*/15 * * * *", "Europe/Berlin", "2027-03-27T22:00:00+00:00"),  # a skipped hour
        ("30 2 * * *", "Europe/Berlin", "2027-03-20T00:00:00+00:00"),
        ("30 1 * * *", "America/New_York", "2027-11-01T00:00:00+00:00"),
        ("*/7 * * * * *", "UTC", "2027-01-01T00:00:00+00:00"),
        ("0 0 29 2 *", "UTC", "2020-01-01T00:00:00+00:00"),
    ],
)
def test_latest_finds_the_newest_fire_times_that_forward_iteration_finds(
    expression: str, timezone: str, after: str
) -> None:
    schedule = Schedule(expression, timezone)
    start = datetime.fromisoformat(after)
    forward = schedule.fire_times(start, 200)
    for until in (forward[57], forward[57] + timedelta(milliseconds=1), forward[-1]):
        expected = [t for t in forward if t <= until][-5:]
        assert schedule.latest(start, until, 5) == expected
    assert schedule.latest(start, forward[0] - timedelta(microseconds=1), 5) == []
    assert schedule.latest(start, forward[1], 5) == forward[:2]


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("* * * * * *", timedelta(seconds=1)),
        ("*/5 * * * *", timedelta(minutes=5)),
        ("0,1 0 * * *", timedelta(minutes=1)),
        ("0 3 * * 1,2", timedelta(days=1)),
        ("@monthly", timedelta(days=28)),
    ],
)
def test_shortest_interval(expression: str, interval: timedelta) -> None:
    assert shortest_interval(Schedule(expression)) == interval


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0 0 30 2 *"], r"error: '0 0 30 2 \*' never fires"),
        (["* * 31 2 *"], "never fires"),
        (["0 0 31 4 *"], "never fires"),
        (["61 * * * *"], "not a valid cron expression"),
        (["* * * * *", "--tz", "America"], "unknown time zone 'America'"),
        (["* * * * *", "--tz", "UTC\n"], r"unknown time zone 'UTC\\n'"),
        (["* * * * *", "--from", "9999-12-31T23:59:59+00:00"], "no fire time after 9999-12-31"),
        (["* * * * *", "--from", "tomorrow"], "--from 'tomorrow' is not an ISO 8601 time"),
        (["* * * * *", "--from", "2027-01-01T00:00:00"], "needs a UTC offset"),
        (["* * * * *", "--from", "x\ny"], r"--from 'x\\ny' is not"),
        (["* * * * *", "--count", "0"], "Invalid value for '--count'"),
    ],
)
def test_jobs_next_refuses_bad_input_with_one_line_and_exit_2(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["jobs", "next", *args])
    assert result.exit_code == 2, result.output
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.output
    if message.startswith("error"):
        assert result.stderr.count("\n") == 1


def test_jobs_next_prints_the_fire_times_in_the_zone() -> None:
    result = CliRunner().invoke(
        app, ["jobs", "next", "0 0 29 2 *", "--from", "2027-01-01T00:00:00+00:00", "--count", "2"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
