"""What the operator asked of `cronstream replay`, validated: options as given (Asked),
and as a Request with times, partitions and the rebuild target resolved (`check`).
A bad option raises ReplayError, one line naming it."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cronstream.errors import CronstreamError
from cronstream.runtime.instants import InstantError, parse_instant
from cronstream.runtime.names import NOT_AN_IDENTIFIER, is_identifier
from cronstream.runtime.untrusted import shown

Mode = Literal["re-apply", "rebuild"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReplayError(CronstreamError, ValueError):
    """A replay that cannot be done as asked; the message is one line naming the option."""

    exit_code = 2


def sql_identifier_option(option: str, value: str, qualified: bool = False) -> str:
    """The value of `option` if a plain SQL identifier (`schema.name` when `qualified`),
    else a ReplayError naming the option."""
    if not is_identifier(value, qualified):
        raise ReplayError(f"{option} '{shown(value)}' {NOT_AN_IDENTIFIER}")
    return value


def schema_for(consumer: str) -> str:
    """The default rebuild schema of a consumer name: the name made a safe identifier,
    then `_` and a hash of the exact name, so names that read alike (`orders-v2` and
    `orders.v2`, `Orders` and `orders`, long names alike in their first 52 characters)
    get schemas of their own. At most 63 characters, Postgres's identifier limit."""
    digest = hashlib.sha256(consumer.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name = re.sub(r"[^a-z0-9_]", "_", consumer.lower())
    if not re.match(r"[a-z_]", name):
        name = f"r_{name}"
    if name.startswith("pg_"):
        name = f"r_{name}"  # Postgres reserves pg_ schema names
    return f"{name[: 63 - 1 - len(digest)]}_{digest}"


def parse_partitions(text: str) -> tuple[int, ...]:
    """`0,3` -> (0, 3); refuses anything but distinct non-negative integers."""
    numbers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not part.isascii():
            raise ReplayError(f"--partitions '{shown(text)}': '{shown(part)}' is not a partition")
        if int(part) in numbers:
            raise ReplayError(f"--partitions '{shown(text)}': partition {part} is given twice")
        numbers.append(int(part))
    return tuple(sorted(numbers))


def parse_time(option: str, text: str) -> datetime:
    """An ISO 8601 time with a UTC offset, not before Kafka's timestamps begin (1970)."""
    try:
        moment = parse_instant(option, text)
    except InstantError as error:
        raise ReplayError(str(error)) from None
    if moment < _EPOCH:
        raise ReplayError(f"{option} '{shown(text)}' is before 1970")
    return moment


def to_millis(moment: datetime) -> int:
    """Kafka's millisecond timestamp of `moment`, rounded up: a record stamped at
    millisecond m is before `moment` exactly when m < to_millis(moment)."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


@dataclass(frozen=True)
class Asked:
    """The options of `cronstream replay` as given, before `check`."""

    topic: str
    partitions: str | None = None
    from_offset: int | None = None
    from_time: str | None = None
    from_beginning: bool = False
    to_offset: int | None = None
    to_time: str | None = None
    consumer: str | None = None  # rebuild mode when set
    schema: str | None = None
    like: tuple[str, ...] = ()
    rate_limit: float | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Asked:
        """The replay options among a command's parameters, picked by name."""
        picked = {option.name: options[option.name] for option in fields(cls)}
        return cls(**picked | {"like": tuple(picked["like"] or ())})  # a list, or None


@dataclass(frozen=True)
class Request:
    """What the operator asked for, validated (`check` builds it): the options as given,
    with times, partitions and the rebuild target resolved."""

    asked: Asked
    partitions: tuple[int, ...] | None
    from_time: datetime | None
    to_time: datetime | None
    schema: str | None  # rebuild mode only
    like: tuple[str, ...]

    @property
    def mode(self) -> Mode:
        return "re-apply" if self.asked.consumer is None else "rebuild"

    def recorded(self) -> dict[str, Any]:
        """The request as the audit row keeps it."""
        return {
            "partitions": list(self.partitions) if self.partitions is not None else None,
            "from_offset": self.asked.from_offset,
            "from_time": self.from_time.isoformat() if self.from_time else None,
            "from_beginning": self.asked.from_beginning,
            "to_offset": self.asked.to_offset,
            "to_time": self.to_time.isoformat() if self.to_time else None,
            "like": list(self.like),
            "rate_limit": self.asked.rate_limit,
        }


def check(asked: Asked, live_group: str) -> Request:
    """The options of `cronstream replay` as a Request; a bad one raises ReplayError."""
    topic, from_offset, to_offset = asked.topic, asked.from_offset, asked.to_offset
    from_time, to_time, rate_limit = asked.from_time, asked.to_time, asked.rate_limit
    consumer, schema, like = asked.consumer, asked.schema, asked.like
    if not topic.strip():
        raise ReplayError("--topic must name a topic")
    starts = [from_offset is not None, from_time is not None, asked.from_beginning]
    if sum(starts) != 1:
        raise ReplayError("give exactly one of --from-offset, --from-time, --from-beginning")
    if to_offset is not None and to_time is not None:
        raise ReplayError("give at most one of --to-offset, --to-time")
    for option, offset in (("--from-offset", from_offset), ("--to-offset", to_offset)):
        if offset is not None and offset < 0:
            raise ReplayError(f"{option} {offset} is negative")
    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise ReplayError(f"--from-offset {from_offset} is after --to-offset {to_offset}")
    start = parse_time("--from-time", from_time) if from_time is not None else None
    end = parse_time("--to-time", to_time) if to_time is not None else None
    if start is not None and end is not None and start >= end:
        raise ReplayError(f"--from-time {start.isoformat()} is not before --to-time")
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ReplayError(f"--rate-limit {rate_limit} must be a positive number of records/s")
    if consumer is None and (schema is not None or like):
        raise ReplayError("--schema and --like belong to rebuild mode: give --consumer NAME")
    if consumer is not None:
        if not consumer.strip():
            raise ReplayError("--consumer must name a consumer")
        if consumer == live_group:
            raise ReplayError(
                f"--consumer '{shown(consumer)}' is the live consumer group: to re-apply "
                "a range for it, leave --consumer out"
            )
        schema = (
            sql_identifier_option("--schema", schema)
            if schema is not None
            else schema_for(consumer)
        )
        if schema.lower().startswith("pg_") or schema.lower() == "information_schema":
            raise ReplayError(f"--schema '{shown(schema)}' is a system schema")
        like = tuple(sql_identifier_option("--like", name, qualified=True) for name in like) or (
            "entity_projection",
        )
    partitions = parse_partitions(asked.partitions) if asked.partitions is not None else None
    return Request(asked, partitions, start, end, schema, like)
