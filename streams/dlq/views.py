"""What `cronstream dlq list` and `dlq show` report: dead letters per topic and reason,
and one dead letter with the record it wraps, found in its dead-letter topic."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cronstream.config.settings import Settings
from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka import clients
from cronstream.pg import connections
from cronstream.streams.dlq.letters import Letter
from cronstream.streams.dlq.reading import DlqError, LetterReader
from cronstream.streams.sql import query


@dataclass(frozen=True)
class ReasonCount:
    """Dead letters of one consumer, topic and reason."""

    consumer: str
    topic: str
    reason: str
    unresolved: int
    resolved: int
    first_seen: datetime
    last_seen: datetime  # the last failure, a redrive's included

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


async def reason_counts(
    settings: Settings, topic: str | None, reason: str | None, include_resolved: bool
) -> list[ReasonCount]:
    """Unresolved dead letters (all, with `include_resolved`) by consumer, topic, reason."""
    async with connections.connection(settings) as connection:
        rows = await connection.fetch(query("dlq_summary"), topic, reason, include_resolved)
    return [
        ReasonCount(
            r["consumer"],
            r["topic"],
            r["error"],
            r["unresolved"],
            r["resolved"],
            r["first_seen"],
            r["last_seen"],
        )
        for r in rows
    ]


@dataclass
class Shown:
    """One `dead_letters` row and the copies of its letter in its dead-letter topic."""

    row: dict[str, Any]
    format: str  # of the original topic, as the settings name it
    copies: list[Letter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        plain = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.row.items()}
        return {**plain, "format": self.format, "copies": [_letter_json(c) for c in self.copies]}


async def show(settings: Settings, letter_id: int) -> Shown:
    """Dead letter `letter_id`, read back from its dead-letter topic (all of it)."""
    async with connections.connection(settings) as connection:
        row = await connection.fetchrow(query("dlq_one"), letter_id)
    if row is None:
        raise DlqError(f"no dead letter {letter_id} (see `cronstream dlq list`)")
    given = settings.external_topics.get(row["topic"])
    shown = Shown(dict(row), given.name if given is not None else "envelope")
    wanted = (row["consumer"], row["topic"], row["partition"], row["offset"])
    async with clients.started(LetterReader(settings, row["dlq_topic"])) as reader:
        async for batch in reader.batches(settings.batch_size):
            shown.copies += [x for x in batch if isinstance(x, Letter) and x.key == wanted]
    return shown


def _letter_json(letter: Letter) -> dict[str, Any]:
    at = letter.at
    return {
        "dlq_topic": at.topic,
        "dlq_partition": at.partition,
        "dlq_offset": at.offset,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "dlq_id": letter.letter_id,
        "headers": [_bytes_json(name, value) for name, value in at.headers],
        "original": _record_json(letter.original),
        "value_omitted": letter.omitted,
    }


def _record_json(record: ConsumedRecord) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _bytes_json("key", record.key),
        "value": _bytes_json("value", record.value),
        "headers": [_bytes_json(name, value) for name, value in record.headers],
    }


def _bytes_json(name: str, data: bytes | None) -> dict[str, Any]:
    """Bytes as JSON: `text` when UTF-8, else `base64`."""
    shown_name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    if data is None:
        return {"name": shown_name, "text": None}
    try:
        return {"name": shown_name, "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"name": shown_name, "base64": base64.b64encode(data).decode("ascii")}
