"""Source rows as events: what one page holds, and how a row's key and JSON are read."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

from cronstream.events.envelope import MAX_DEPTH, EnvelopeError, Event, json_object, strict_loads
from cronstream.runtime.untrusted import safe_text

# A btree entry holds about 2,700 bytes: 500 characters of up to 4 bytes fit.
KEY_LIMIT = 500


def capped(key: str, limit: int) -> str:
    """`key` made safe; one too long is cut and ends in a hash of all of it, so that two
    keys with the same beginning stay apart."""
    text = safe_text(key, len(key) * 10)  # escaped, not cut
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: limit - 29]}... (sha256 {digest})"


def payload_object(text: str | bytes | None) -> dict[str, Any]:
    """A row's JSON as an object, or an EnvelopeError saying why it cannot be one."""
    if text is None:
        raise EnvelopeError("payload", "is NULL")
    # Postgres text holds no NUL and no lone surrogate; only a \u escape brings one in,
    # so JSON without one, and with too few brackets to nest past MAX_DEPTH as a
    # payload, skips the walk over every string (costly per row).
    if (
        isinstance(text, str)
        and "\\u" not in text
        and text.count("[") + text.count("{") < MAX_DEPTH
    ):
        with contextlib.suppress(ValueError, RecursionError):
            data = strict_loads(text)
            if type(data) is dict:
                return data
    try:
        return json_object(text, depth=2)  # the careful path, which says what is wrong
    except EnvelopeError as error:
        raise EnvelopeError("payload", error.reason) from None


@dataclass(frozen=True, slots=True)
class Row:
    """A source row that became an event, as its Kafka record; `key` is the event's key,
    `mark` what marking it emitted needs."""

    key: str
    kafka_key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes
    source_row: str
    mark: Any

    @classmethod
    def of(cls, event: Event, source_row: str, mark: Any) -> Row:
        return cls(
            event.key, event.kafka_key, event.kafka_headers, event.encode(), source_row, mark
        )


@dataclass(frozen=True)
class Rejected:
    source_row: str  # the key (flag, watermark) or the outbox id, escaped and capped
    key: str | None
    reason: str


@dataclass(frozen=True)
class Page:
    size: int  # rows read, rejected ones included
    rows: list[Row]
    rejected: list[Rejected]
    position: Any  # where the next page starts
