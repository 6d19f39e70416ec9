"""Kafka Connect and Debezium time values as text, as Postgres's `to_jsonb` renders the
column under `TimeZone=UTC`: `2024-02-29`, `12:34:56.789`, `2024-02-29T12:34:56.789`,
`2024-02-29T11:34:56.789012+00:00`, `10:34:56.5+00`, `0044-03-15T12:00:00 BC`,
`infinity`.

Years outside Python's 1..9999 are real here (Postgres dates run from 4713 BC to
5874897 AD), so the calendar is computed, proleptic Gregorian as Postgres's is. Each
function raises ValueError with a short reason for a value its type cannot hold.
"""

from __future__ import annotations

import re

from cronstream.runtime.untrusted import json_type_name

SECOND = 1
MILLI = 1_000
MICRO = 1_000_000
NANO = 1_000_000_000
DAY_SECONDS = 86_400

# Debezium's encodings of Postgres's infinities. Timestamps: documented ("converted to
# timestamps with value 9223372036825200000 in case of positive infinity or
# -9223372036832400000 in case of negative infinity", in microseconds; the millisecond
# modes divide by 1000). Dates: undocumented, what Debezium 3.6 sends (its LocalDate for
# the JDBC driver's infinity, as epoch days); both are before 4713 BC, Postgres's first
# date, so no real date reads as one.
_INFINITIES = {
    MICRO: {9223372036825200000: "infinity", -9223372036832400000: "-infinity"},
    MILLI: {9223372036825200: "infinity", -9223372036832400: "-infinity"},
}
_DATE_INFINITIES = {-622191234: "infinity", -625821272: "-infinity"}
_INFINITY_TEXT = ("infinity", "-infinity")


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of `days` since 1970-01-01; year 0 is 1 BC (H. Hinnant's
    civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (days_from_civil)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_days(year: int, month: int) -> int:
    return _days(year + month // 12, month % 12 + 1, 1) - _days(year, month, 1)


def _date_parts(days: int) -> tuple[str, str]:
    """The date's text and its era suffix (" BC" or "")."""
    year, month, day = _civil(days)
    era = " BC" if year <= 0 else ""
    return f"{(1 - year if era else year):04d}-{month:02d}-{day:02d}", era


def _clock(units: int, per_second: int) -> str:
    """`units` since midnight as HH:MM:SS[.fraction], the fraction without trailing zeros."""
    seconds, fraction = divmod(units, per_second)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    if fraction:
        width = len(str(per_second)) - 1
        text += "." + f"{fraction:0{width}d}".rstrip("0")
    return text


def found(value: object) -> str:
    """What a JSON value is, for a reason: `found JSON string`."""
    return f"found JSON {json_type_name(value)}"


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{found(value)}, not an integer")
    return value


def date_text(value: object) -> str:
    """Days since the epoch (io.debezium.time.Date, Connect's Date) as a date."""
    days = _integer(value)
    if days in _DATE_INFINITIES:
        return _DATE_INFINITIES[days]
    if not -(2**31) <= days < 2**31:
        raise ValueError(f"{days} days is out of range")
    text, era = _date_parts(days)
    return text + era


def time_text(value: object, per_second: int) -> str:
    """Time since midnight in 1/`per_second` seconds (Time, MicroTime, NanoTime,
    Connect's Time) as a time of day; Postgres allows 24:00:00."""
    units = _integer(value)
    if not 0 <= units <= DAY_SECONDS * per_second:
        raise ValueError(f"{units} is not within a day")
    return _clock(units, per_second)


def timestamp_text(value: object, per_second: int, zone: str = "") -> str:
    """Time since the epoch in 1/`per_second` seconds (Timestamp, MicroTimestamp,
    NanoTimestamp, Connect's Timestamp) as a timestamp without time zone."""
    units = _integer(value)
    infinity = _INFINITIES.get(per_second, {}).get(units)
    if infinity:
        return infinity
    if not -(2**63) <= units < 2**63:
        raise ValueError(f"{units} is out of range")
    return _timestamp(units, per_second, zone)


def _timestamp(units: int, per_second: int, zone: str) -> str:
    days, rest = divmod(units, DAY_SECONDS * per_second)
    date, era = _date_parts(days)
    return f"{date}T{_clock(rest, per_second)}{zone}{era}"


_FRACTION = r"(?:\.(\d{1,9}))?"
_OFFSET = r"(Z|[+-]\d{2}:\d{2}(?::\d{2})?)"
_ZONED_TIMESTAMP = re.compile(
    rf"([+-]?\d{{4,9}})-(\d{{2}})-(\d{{2}})T(\d{{2}}):(\d{{2}}):(\d{{2}}){_FRACTION}{_OFFSET}"
)
_ZONED_TIME = re.compile(rf"(\d{{2}}):(\d{{2}}):(\d{{2}}){_FRACTION}{_OFFSET}")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{found(value)}, not a string")
    return value


def _offset_seconds(offset: str) -> int:
    if offset == "Z":
        return 0
    parts = [int(part) for part in offset[1:].split(":")]
    hours, minutes, seconds = (*parts, 0)[:3]
    if hours > 18 or minutes > 59 or seconds > 59:
        raise ValueError(f"offset {offset} is out of range")
    total = hours * 3600 + minutes * 60 + seconds
    return -total if offset[0] == "-" else total


def _seconds_of_day(hour: str, minute: str, second: str) -> int:
    h, m, s = int(hour), int(minute), int(second)
    if h > 24 or m > 59 or s > 59 or (h == 24 and m + s > 0):
        raise ValueError(f"{hour}:{minute}:{second} is not a time of day")
    return h * 3600 + m * 60 + s


def _nanos(fraction: str | None) -> int:
    return int((fraction or "").ljust(9, "0"))


def zoned_timestamp_text(value: object) -> str:
    """An ISO 8601 timestamp with offset (io.debezium.time.ZonedTimestamp: `2024-02-29T
    11:34:56.789012Z`, `+294276-12-31T23:59:59Z`, `infinity`) in UTC, as `+00:00`."""
    text = _text(value)
    if text in _INFINITY_TEXT:
        return text
    found = _ZONED_TIMESTAMP.fullmatch(text)
    if found is None:
        raise ValueError("is not an ISO 8601 timestamp with an offset")
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    y, m, d = int(year), int(month), int(day)
    if not 1 <= m <= 12 or not 1 <= d <= _month_days(y, m):
        raise ValueError(f"{year}-{month}-{day} is not a date")
    seconds = _days(y, m, d) * DAY_SECONDS + _seconds_of_day(hour, minute, second)
    units = (seconds - _offset_seconds(offset)) * NANO + _nanos(fraction)
    return _timestamp(units, NANO, "+00:00")


def zoned_time_text(value: object) -> str:
    """An ISO 8601 time with offset (io.debezium.time.ZonedTime: `10:34:56.5Z`) in UTC,
    as Postgres renders a timetz: `10:34:56.5+00`."""
    found = _ZONED_TIME.fullmatch(_text(value))
    if found is None:
        raise ValueError("is not an ISO 8601 time with an offset")
    hour, minute, second, fraction, offset = found.groups()
    seconds = _seconds_of_day(hour, minute, second) - _offset_seconds(offset)
    return _clock((seconds % DAY_SECONDS) * NANO + _nanos(fraction), NANO) + "+00"


def micro_duration_text(value: object) -> str:
    """io.debezium.time.MicroDuration (microseconds; Debezium counts a month as 30.4375
    days) as an ISO 8601 duration in seconds, which Postgres reads: `PT-79020.5S`."""
    micros = _integer(value)
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), MICRO)
    decimals = f".{fraction:06d}".rstrip("0") if fraction else ""
    return f"PT{sign}{seconds}{decimals}S"


_INTERVAL = re.compile(
    r"P(?:-?\d+Y)?(?:-?\d+M)?(?:-?\d+W)?(?:-?\d+D)?(?:T(?:-?\d+H)?(?:-?\d+M)?(?:-?\d+(?:\.\d+)?S)?)?"
)


def interval_text(value: object) -> str:
    """io.debezium.time.Interval (interval.handling.mode=string), an ISO 8601 duration
    with signed parts (`P1Y2M3DT4H5M6.78S`), kept: Postgres reads it as it is."""
    text = _text(value)
    if text in ("P", "PT") or _INTERVAL.fullmatch(text) is None:
        raise ValueError("is not an ISO 8601 duration")
    return text
