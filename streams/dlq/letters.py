"""A record of a dead-letter topic read back: the dead letter's headers (written by
streams/deadletter.py) and the original record they wrap.

Anything may be in a `.dlq` topic (a producer of its own, a record written by hand), so
a record whose headers do not say where it came from is `Garbled`, with a one-line
reason, never an exception out of the reader. The original's headers are those before
ours; a header name that was not UTF-8 travelled as a `dlq.header.name` and
`dlq.header.value` pair and is given back as it was on the wire (surrogate-escaped, as
cronstream/kafka/salvage.py reads such names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cronstream.handlers.records import ConsumedRecord
from cronstream.runtime.untrusted import shown
from cronstream.streams import deadletter

# Ours, as the producer writes them after the original record's headers.
OURS = frozenset(
    {
        deadletter.ERROR,
        deadletter.TOPIC,
        deadletter.PARTITION,
        deadletter.OFFSET,
        deadletter.ATTEMPTS,
        deadletter.CONSUMER,
        deadletter.ID,
        deadletter.VALUE_OMITTED,
    }
)
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._\-]{1,249}")
_NUMBER = re.compile(r"[0-9]{1,18}")
NULL_VALUE = b"the original value is null"

LetterKey = tuple[str, str, int, int]
"""(consumer, topic, partition, offset): a `dead_letters` row's unique key."""


class Garbled(Exception):
    """A record of a dead-letter topic that is no dead letter of ours; says why."""


@dataclass(frozen=True)
class Letter:
    """One dead letter as its topic holds it."""

    at: ConsumedRecord  # the record in the dead-letter topic, as read
    consumer: str
    reason: str
    attempts: int | None
    letter_id: str | None
    original: ConsumedRecord  # as the consumer read it: topic, partition, offset, key, value
    omitted: str | None  # why the original value is not here (too large), if it is not

    @property
    def key(self) -> LetterKey:
        o = self.original
        return (self.consumer, o.topic, o.partition, o.offset)


def read_letter(record: ConsumedRecord) -> Letter:
    """The dead letter `record` holds; Garbled naming what is missing or wrong."""
    ours: dict[str, bytes] = {}
    kept: list[tuple[str, bytes]] = []
    # Ours come last: scanning from the end, the last of each name is ours and the rest
    # (a dead letter of a dead letter carries the inner one's too) the original's.
    for name, data in reversed(record.headers):
        if name in OURS and name not in ours:
            ours[name] = data
        else:
            kept.append((name, data))
    kept.reverse()
    topic = _text(ours, deadletter.TOPIC)
    if not _TOPIC_NAME.fullmatch(topic):
        raise Garbled(f"header {deadletter.TOPIC} is not a topic name: '{shown(topic)}'")
    consumer = _text(ours, deadletter.CONSUMER)
    omitted_text = ours.get(deadletter.VALUE_OMITTED)
    omitted = omitted_text.decode("utf-8", "replace") if omitted_text is not None else None
    value: bytes | None = record.value
    key = record.key
    if omitted_text == NULL_VALUE:
        value, omitted = None, None
    original = ConsumedRecord(
        topic,
        _number(ours, deadletter.PARTITION),
        _number(ours, deadletter.OFFSET),
        value,
        key,
        _restored(kept),
    )
    attempts = ours.get(deadletter.ATTEMPTS, b"")
    letter_id = ours.get(deadletter.ID)
    return Letter(
        at=record,
        consumer=consumer,
        reason=ours.get(deadletter.ERROR, b"(no reason given)").decode("utf-8", "replace"),
        attempts=int(attempts) if _NUMBER.fullmatch(attempts.decode("latin-1")) else None,
        letter_id=letter_id.decode("utf-8", "replace") if letter_id is not None else None,
        original=original,
        omitted=omitted,
    )


def _text(ours: dict[str, bytes], name: str) -> str:
    if name not in ours:
        raise Garbled(f"no {name} header: not a dead letter of cronstream")
    try:
        return ours[name].decode("utf-8")
    except UnicodeDecodeError:
        raise Garbled(f"header {name} is not UTF-8: {shown(repr(ours[name]))}") from None


def _number(ours: dict[str, bytes], name: str) -> int:
    text = _text(ours, name)
    if not _NUMBER.fullmatch(text):
        raise Garbled(f"header {name} is not a number: '{shown(text)}'")
    return int(text)


def _restored(headers: list[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """The original headers: each name/value pair of a non-UTF-8 name made one header."""
    restored: list[tuple[str, bytes]] = []
    pending: bytes | None = None
    for name, value in headers:
        if name == deadletter.HEADER_NAME:
            pending = value
        elif name == deadletter.HEADER_VALUE and pending is not None:
            restored.append((pending.decode("utf-8", "surrogateescape"), value))
            pending = None
        else:
            restored.append((name, value))
    return tuple(restored)
