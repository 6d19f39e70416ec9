"""Input formats: how a record of an input topic becomes the `Event` handlers receive.

Each topic has one format (config/topics.py: CRONSTREAM_EXTERNAL_TOPICS=topic[:format[:entity]]).
`envelope` is cronstream's own; the adapters (events/debezium.py, events/cloudevents.py)
register theirs here when imported. A decoder returns the event, or None for a record
that carries none and is acknowledged as is (a Debezium tombstone), or raises
EnvelopeError naming the field that cannot be mapped: that record is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cronstream.config.topics import FormatName, TopicFormat
from cronstream.events.envelope import Event, Headers, decode, decode_fast


class Decoder(Protocol):
    def __call__(self, value: bytes | None, key: bytes | None, headers: Headers) -> Event | None:
        """The record's event; None to acknowledge it without one; EnvelopeError if unmappable."""
        ...


def _envelope(value: bytes | None, key: bytes | None, headers: Headers) -> Event:
    event = None if value is None else decode_fast(value)  # one call less, per record
    return decode(value) if event is None else event


# Per format: what a dead letter calls a record it could not map ("invalid <what>: ..."),
# and the decoder for a topic, given the entity that overrides the records' own.
_FORMATS: dict[FormatName, tuple[str, Callable[[str | None], Decoder]]] = {
    "envelope": ("envelope", lambda entity: _envelope),
}


def register(name: FormatName, what: str, decoder: Callable[[str | None], Decoder]) -> None:
    _FORMATS[name] = (what, decoder)


def what(topic_format: TopicFormat) -> str:
    return _FORMATS[topic_format.name][0]


def decoder(topic_format: TopicFormat) -> Decoder:
    return _FORMATS[topic_format.name][1](topic_format.entity)
