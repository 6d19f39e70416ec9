"""Cron semantics: expressions, time zones and daylight-saving time.

Expressions have 5 fields (minute hour day month weekday), or 6 with SECONDS FIRST as in
Quartz, Spring and robfig/cron (`0/30 * * * * ?` = every 30 seconds); `?` is accepted in
the day fields and means `*`; `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
`@yearly` and `@annually` are aliases. Weekdays are 0-7 (0 and 7 are Sunday).

An expression that can never fire (`0 0 30 2 *`: croniter accepts it, then fails on every
step) is refused when the schedule is made, as is one longer than MAX_EXPRESSION or with
characters other than printable ASCII.

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
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from cronstream.errors import CronstreamError
from cronstream.runtime.untrusted import shown

ALIASES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
# How far a repeated hour can reach back in wall-clock time (DST shifts are at most 2 h).
MAX_SHIFT = timedelta(hours=2)
MAX_EXPRESSION = 200
# Fire times are whole seconds: croniter yields them, and a DST jump is rounded to one.
SECOND = timedelta(seconds=1)
# Where the never-fires check looks from; any instant would do, a fixed one keeps the
# verdict the same on every machine and every day.
REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


MAX_CHECKED = 4096
_CHECKED: set[tuple[str, str]] = set()  # (expression, zone) found valid


class CronError(CronstreamError, ValueError):
    """An expression or time zone that cannot be scheduled."""

    exit_code = 2


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # ZoneInfo reads a file by that name: a folder ("America") or an overlong name is
    # an OSError, not a ZoneInfoNotFoundError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone '{shown(name)}' (expected an IANA name like Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a time zone; `next_after` gives its fire times as instants."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        # The status page loads every job each time it is collected; checking the same
        # expression again (the never-fires search most of all) was most of its CPU.
        if (self.expression, self.timezone) in _CHECKED:
            return
        self._check()
        if len(_CHECKED) >= MAX_CHECKED:
            _CHECKED.clear()
        _CHECKED.add((self.expression, self.timezone))

    def _check(self) -> None:
        zone(self.timezone)
        text = shown(self.expression)
        if len(self.expression) > MAX_EXPRESSION or not (
            self.expression.isascii() and self.expression.replace(" ", "").isprintable()
        ):
            raise CronError(
                f"'{text}': expected at most {MAX_EXPRESSION} printable ASCII characters"
            )
        fields = self.expression.split()
        if len(fields) == 1 and fields[0].lower() in ALIASES:
            return
        if len(fields) not in (5, 6):
            raise CronError(
                f"'{text}': expected 5 fields (minute hour day month weekday), "
                "6 with seconds first, or an alias like @hourly"
            )
        if not croniter.is_valid(self._croniter_expression, second_at_beginning=self.has_seconds):
            raise CronError(f"'{text}' is not a valid cron expression")
        try:
            self.next_after(REFERENCE)
        except CronError:
            raise CronError(
                f"'{text}' never fires (no such date, e.g. February 30 or April 31)"
            ) from None

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

    @cached_property
    def _iterator(self) -> croniter:
        # Made once: parsing the expression costs several times more than a step.
        return croniter(
            self._croniter_expression,
            REFERENCE.replace(tzinfo=None),
            second_at_beginning=self.has_seconds,
        )

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock fire times strictly after the naive `start`."""
        it = self._iterator
        it.set_current(start, force=True)
        while True:
            try:
                yield it.get_next(datetime)
            # No date matches: croniter gives up after decades of search
            # (CroniterBadDateError, a ValueError).
            except ValueError:
                raise CronError(
                    f"'{shown(self.expression)}' has no fire time after {start.isoformat()}"
                ) from None

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
        """The first fire instant strictly after `after` (an aware datetime), in UTC.

        Raises CronError when there is none (the expression never fires, or not before
        year 9999).
        """
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        try:
            return self._next_after(after.astimezone(UTC))
        except OverflowError:
            raise CronError(
                f"'{shown(self.expression)}' has no fire time after {after.isoformat()}"
            ) from None

    def _next_after(self, after: datetime) -> datetime:
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

    def latest(self, after: datetime, until: datetime, count: int) -> list[datetime]:
        """The newest `count` fire instants in (after, until], oldest first.

        Costs a binary search for the newest, then about `count` steps (more only for
        a schedule whose fire times come in bursts), however many fire times the range
        holds: a per-second job resuming after a month has millions.
        """
        first = self.next_after(after)
        if first > until or count < 1:
            return []
        newest = self._newest(first, until)
        # Windows ending at the newest, of doubling width, each walked forward, until
        # one holds `count` fire times or reaches back to `after`. Fire times are at
        # least a second apart, so no narrower window than `count` seconds can do.
        width = SECOND * count
        while True:
            start = after if width >= newest - after else newest - width
            found: deque[datetime] = deque(maxlen=count)
            tick = first if start == after else self.next_after(start)
            while tick <= newest:
                found.append(tick)
                tick = self.next_after(tick)
            if len(found) == count or start == after:
                return list(found)
            width *= 2

    def _newest(self, first: datetime, until: datetime) -> datetime:
        """The newest fire instant <= until, given `first`, one that is."""
        best, high = first, until  # no fire time lies in (high, until]
        while high - best >= SECOND:  # (best, best + 1 s) holds no whole second
            middle = best + (high - best) / 2
            tick = self.next_after(middle)
            if tick <= high:
                best = tick
            else:
                high = middle
        return best


@lru_cache(maxsize=1024)
def shortest_interval(schedule: Schedule, sample: int = 64) -> timedelta:
    """The shortest gap between consecutive fire times, over the first `sample` of them.

    A sample, not a proof: enough for the calendar patterns cron can express (a DST
    change can still shorten one gap by an hour).
    """
    times = schedule.fire_times(REFERENCE, sample)
    return min(b - a for a, b in pairwise(times))
