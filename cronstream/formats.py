"""Input formats: how a record of an input topic becomes the `Event` handlers receive.

Each topic has one format (settings: CRONSTREAM_EXTERNAL_TOPICS=topic[:format[:entity]]).
`envelope` is cronstream's own; `debezium` and `cloudevents` are adapters
(cronstream/debezium.py, cronstream/cloudevents.py). A decoder returns the event, or None
for a record that carries none and is acknowledged as is (a Debezium tombstone), or
raises EnvelopeError naming the field that cannot be mapped: that record is dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from cronstream import cloudevents, debezium
from cronstream.envelope import Event, Headers, decode

FormatName = Literal["envelope", "debezium", "cloudevents"]
FORMATS: tuple[FormatName, ...] = ("envelope", "debezium", "cloudevents")

# What a dead letter calls a record it could not map: "invalid <what>: <field>: <reason>".
_WHAT: dict[FormatName, str] = {
    "envelope": "envelope",
    "debezium": "Debezium record",
    "cloudevents": "CloudEvent",
}


class Decoder(Protocol):
    def __call__(self, value: bytes | None, key: bytes | None, headers: Headers) -> Event | None:
        """The record's event; None to acknowledge it without one; EnvelopeError if unmappable."""
        ...


def _envelope(value: bytes | None, key: bytes | None, headers: Headers) -> Event:
    return decode(value)


@dataclass(frozen=True)
class TopicFormat:
    """An input topic's format, and the entity that overrides the records' own, if any."""

    name: FormatName = "envelope"
    entity: str | None = None

    @property
    def what(self) -> str:
        return _WHAT[self.name]

    def decoder(self) -> Decoder:
        if self.name == "debezium":
            return debezium.Adapter(self.entity)
        if self.name == "cloudevents":
            return cloudevents.Adapter(self.entity)
        return _envelope


ENVELOPE = TopicFormat()
