"""Each input line as the Kafka record it will be sent as (a PublishLine), or the error
that refuses it where a worker would (a LineError), with its line number."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, NamedTuple, Self

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from cronstream.events.envelope import (
    WHOLE_VALUE,
    EnvelopeError,
    Event,
    decode_fast,
    encoded,
    from_fields,
    json_object,
    new_trace_id,
)
from cronstream.kafka.clients import MAX_REQUEST_SIZE


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class PublishLine(NamedTuple):
    """One event to publish as the bytes Kafka will get, and the input line it came from
    (a tuple: hundreds of thousands are made in a run)."""

    line: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, line: int, event: Event, value: bytes) -> Self:
        """The Kafka record of `event`; refused when the producer would refuse its size."""
        key, headers = event.kafka_key, event.kafka_headers
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)  # aiokafka's
        if size > MAX_REQUEST_SIZE:
            raise EnvelopeError(
                WHOLE_VALUE,
                f"is {size} bytes as a Kafka record, over the producer's limit of "
                f"{MAX_REQUEST_SIZE} bytes",
            )
        return cls(line, key, value, headers)


def parse_line(raw: bytes, source: str) -> tuple[Event, bytes]:
    """One JSONL line as an Event and its Kafka value; id, occurred_at, trace_id and
    source may be omitted. Refused (EnvelopeError) where a worker would refuse it."""
    event = decode_fast(raw)  # every required field there: one strict pass
    if event is not None:
        if event.trace_id is None:
            event = event.model_copy(update={"trace_id": new_trace_id()})
            return event, event.encode()  # a decoded event re-encodes to what decodes
        # Nothing to fill in: the line is a value a worker decodes (decode_fast is its
        # decoding) to this very event, and is sent as it is rather than encoded again.
        return event, raw.strip()
    # Fields that may be omitted are missing, or the value needs the careful path.
    data = json_object(raw)
    data.setdefault("source", source)
    event = from_fields(data)
    return event, encoded(event)


def read_lines(stream: IO[bytes], source: str) -> Iterator[PublishLine | LineError]:
    """Number, validate and encode each non-blank line of `stream`."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            yield PublishLine.of(number, *parse_line(raw, source))
        except EnvelopeError as error:
            yield LineError(number, str(error))
