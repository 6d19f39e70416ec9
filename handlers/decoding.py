"""From a consumed record to the event it carries, in its topic's format.

A record that cannot be read is not an error of the batch: it is dead-lettered alone,
with the reason `Undecodable` carries (a header name Kafka clients cannot read, a value
that is not its format, a decoder failing in any other way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from operator import itemgetter

from cronstream.config.topics import ENVELOPE, TopicFormat
from cronstream.events import formats as topic_formats
from cronstream.events.envelope import EnvelopeError, Event
from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka.salvage import unreadable_header

_NAME = itemgetter(0)  # a header's name
_HEADERS = itemgetter(5)  # a ConsumedRecord's headers


def names_readable(records: Iterable[ConsumedRecord]) -> bool:
    """Whether every header name of `records` is ASCII, so readable: the common case,
    checked for a whole batch at C speed rather than record by record."""
    return "".join(map(_NAME, chain.from_iterable(map(_HEADERS, records)))).isascii()


EventReader = Callable[[ConsumedRecord], Event | None]
"""A record's event; None when it carries none (a Debezium tombstone); raises Undecodable."""


class Undecodable(Exception):
    """A record that carries no readable event; the message says why, for its dead letter."""


class Decoders:
    """Each input topic's decoder; a topic not named carries envelopes."""

    def __init__(self, formats: Mapping[str, TopicFormat] | None = None) -> None:
        self._by_topic = {
            topic: (topic_formats.what(given), topic_formats.decoder(given))
            for topic, given in (formats or {}).items()
        }
        self._envelopes = (topic_formats.what(ENVELOPE), topic_formats.decoder(ENVELOPE))

    def reader(self, topic: str, check_headers: bool = True) -> EventReader:
        """The event reader of `topic`'s records; `check_headers`: False when their header
        names are known to be readable (`names_readable`)."""
        what, decode = self._by_topic.get(topic, self._envelopes)

        def read(record: ConsumedRecord) -> Event | None:
            if check_headers:
                unreadable = unreadable_header(record.headers)
                if unreadable is not None:  # read by kafka_salvage: Kafka clients cannot
                    raise Undecodable(f"unreadable record: {unreadable}")
            try:
                return decode(record.value, record.key, record.headers)
            except EnvelopeError as error:
                raise Undecodable(f"invalid {what}: {error}") from None
            except RecursionError:  # absurdly nested JSON a decoder did not catch itself
                raise Undecodable(f"invalid {what}: nested too deeply") from None
            except Exception as error:  # a decoder's bug: the error's class says which
                raise Undecodable(f"undecodable: {type(error).__name__}") from None

        return read
