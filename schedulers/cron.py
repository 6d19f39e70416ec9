"""Cron semantics: expressions, time zones and daylight-saving time.

Expressions have 5 fields (minute hour day month weekday), or 6 with SECONDS FIRST as in
Quartz, Spring and robfig/cron (`0/30 * * * * ?` = every 30 seconds); `?` is accepted in
the day fields and means `*`; `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
`@yearly` and `@annually` are aliases. Weekdays are 0-7 (0 and 7 are Sunday).

Fire times are wall-clock times in the job's IANA time zone. Daylight-saving time
follows Vixie cron:
- a job at a fixed hour whose time falls in a skipped hour runs once, right after the
  jump (02:30 on a spring-forward day in Berlin runs at 03:00+02:00);
- a job at a fixed hour whose time falls in a repeated hour runs once, at the first
  occurrence;
- a job with a wildcard or a step in the hour field follows elapsed time: it runs in
  both copies of a repeated hour and has no runs in a skipped one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

ALIASES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
# How far a repeated hour can reach back in wall-clock time (DST shifts are at most 2 h).
MAX_SHIFT = timedelta(hours=2)


class CronError(ValueError):
    """An expression or time zone that cannot be scheduled."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown time zone '{name}' (expected an IANA name like Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a time zone; `next_after` gives its fire times as instants."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        zone(self.timezone)
        fields = self.expression.split()
        if len(fields) == 1 and fields[0].lower() in ALIASES:
            return
        if len(fields) not in (5, 6):
            raise CronError(
                f"'{self.expression}': expected 5 fields (minute hour day month weekday), "
                "6 with seconds first, or an alias like @hourly"
            )
        if not croniter.is_valid(self._croniter_expression, second_at_beginning=self.has_seconds):
            raise CronError(f"'{self.expression}' is not a valid cron expression")

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    @property
    def _croniter_expression(self) -> str:
        fields = self.expression.split()
        if len(fields) == 1:
            return fields[0].lower()
        day, weekday = (3, 5) if self.has_seconds else (2, 4)
        for index in (day, weekday):
            fields[index] = "*" if fields[index] == "?" else fields[index]
        return " ".join(fields)

    @cached_property
    def elapsed_time(self) -> bool:
        """True when the hour field is a wildcard or a step: DST follows elapsed time."""
        fields = self.expression.split()
        if len(fields) == 1:
            return fields[0].lower() == "@hourly"
        hour = fields[2] if self.has_seconds else fields[1]
        return bool(re.search(r"[*/]", hour))

    @cached_property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock fire times strictly after the naive `start`."""
        it = croniter(self._croniter_expression, start, second_at_beginning=self.has_seconds)
        while True:
            yield it.get_next(datetime)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants (UTC) a wall-clock fire time stands for under the DST rules."""
        first = wall.replace(tzinfo=self.tz, fold=0)
        second = wall.replace(tzinfo=self.tz, fold=1)
        if first.utcoffset() == second.utcoffset():
            return [first.astimezone(UTC)]
        exists = first.astimezone(UTC).astimezone(self.tz).replace(tzinfo=None) == wall
        if exists:  # a repeated hour: fold 0 is the first occurrence
            instants = [first.astimezone(UTC), second.astimezone(UTC)]
            return instants if self.elapsed_time else instants[:1]
        if self.elapsed_time:  # a skipped hour: nothing to run
            return []
        return [self._jump(second.astimezone(UTC), first.astimezone(UTC))]

    def _jump(self, low: datetime, high: datetime) -> datetime:
        """The first instant after a spring-forward jump lying between low and high."""
        before = low.astimezone(self.tz).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.tz).utcoffset() == before:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def next_after(self, after: datetime) -> datetime:
        """The first fire instant strictly after `after` (an aware datetime), in UTC."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        after = after.astimezone(UTC)
        local = self._wall(after)
        shifts = {
            (after + delta).astimezone(self.tz).utcoffset()
            for delta in (-MAX_SHIFT, timedelta(0), MAX_SHIFT)
        }
        # Near a DST change a wall time before `local` can still lie ahead (a repeated
        # hour's second copy), so look back far enough to see it.
        start = local - MAX_SHIFT if len(shifts) > 1 else local
        best: datetime | None = None
        for wall in self._wall_times(start):
            if best is not None and wall - MAX_SHIFT > best.astimezone(self.tz).replace(
                tzinfo=None
            ):
                return best
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
            if best is not None and len(shifts) == 1:
                return best
        raise AssertionError("unreachable: cron iteration is infinite")

    def fire_times(self, after: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        while len(times) < count:
            after = self.next_after(after)
            times.append(after)
        return times
