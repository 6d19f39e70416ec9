"""Cron semantics, with DST days in Europe/Berlin and America/New_York."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pytest

from schedulers.cron import CronError, Schedule


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
    ],
)
def test_invalid_input_is_one_clear_error(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Schedule(expression, timezone)
