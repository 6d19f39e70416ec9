"""Publishing events: validate and encode every input line first, then send those bytes.

Validation is a worker's decoding (`envelope.decode`): a line a worker would
dead-letter is refused here, with its line number. Each valid line is encoded to its
Kafka record during validation and spooled, and the send pass sends those records,
so nothing fails mid-send for a reason a check could have found, and the input is
read once (stdin included).
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO

from aiokafka import AIOKafkaProducer
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
from cronstream.kafka import clients
from cronstream.kafka.clients import MAX_REQUEST_SIZE, Message

# Sends awaited together; bounds memory while keeping the producer's pipeline full.
WINDOW = 2000
# Errors one report lists (a publish run, a POST /events answer): enough to fix them.
MAX_LISTED_ERRORS = 50


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Record:
    """One event as the bytes Kafka will get, and the input line it came from."""

    line: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Checked:
    valid: int = 0
    invalid: int = 0
    errors: list[LineError] = field(default_factory=list)  # the first `limit` of them


@dataclass
class PublishResult:
    sent: int = 0
    partitions: Counter[int] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)


def parse_line(raw: bytes, source: str) -> tuple[Event, bytes]:
    """One JSONL line as an Event and its Kafka value; id, occurred_at, trace_id and
    source may be omitted. Refused (EnvelopeError) where a worker would refuse it."""
    event = decode_fast(raw)  # every required field there: one strict pass
    if event is not None:
        if event.trace_id is None:
            event = event.model_copy(update={"trace_id": new_trace_id()})
        return event, event.encode()  # a decoded event re-encodes to what decodes
    # Fields that may be omitted are missing, or the value needs the careful path.
    data = json_object(raw)
    data.setdefault("source", source)
    event = from_fields(data)
    return event, encoded(event)


def record(line: int, event: Event, value: bytes) -> Record:
    """The Kafka record of `event`; refused when the producer would refuse its size."""
    key, headers = event.kafka_key, event.kafka_headers
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)  # aiokafka's
    if size > MAX_REQUEST_SIZE:
        raise EnvelopeError(
            WHOLE_VALUE,
            f"is {size} bytes as a Kafka record, over the producer's limit of "
            f"{MAX_REQUEST_SIZE} bytes",
        )
    return Record(line, key, value, headers)


def read_lines(stream: IO[bytes], source: str) -> Iterator[Record | LineError]:
    """Number, validate and encode each non-blank line of `stream`."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            yield record(number, *parse_line(raw, source))
        except EnvelopeError as error:
            yield LineError(number, str(error))


def check(
    stream: IO[bytes], source: str, spool: IO[bytes] | None = None, limit: int = MAX_LISTED_ERRORS
) -> Checked:
    """Validate every line; write the valid ones' records to `spool`, keep `limit` errors."""
    checked = Checked()
    for parsed in read_lines(stream, source):
        if isinstance(parsed, LineError):
            checked.invalid += 1
            if len(checked.errors) < limit:
                checked.errors.append(parsed)
            continue
        checked.valid += 1
        if spool is not None:
            # Our own temporary file, written just now: pickle is safe and quick here.
            pickle.dump((parsed.line, parsed.key, parsed.value, parsed.headers), spool)
    return checked


def spooled(spool: IO[bytes]) -> Iterator[Record]:
    """The records `check` wrote to `spool`, in order."""
    spool.seek(0)
    while True:
        try:
            line, key, value, headers = pickle.load(spool)
        except EOFError:
            return
        yield Record(line, key, value, headers)


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[Record],
    on_progress: Callable[[int], None] = lambda _: None,
) -> PublishResult:
    """Send records in order, WINDOW at a time, each acknowledged by Kafka (acks=all).

    A record too large is reported and the rest go on; once Kafka fails to take one
    (unreachable), nothing after it is sent: later records of a key must not overtake it.
    """
    result = PublishResult()
    pending = iter(records)
    while window := list(islice(pending, WINDOW)):
        delivery = await clients.send(
            producer, [Message(topic, item.value, item.key, item.headers) for item in window]
        )
        result.sent += len(delivery.acked)
        result.partitions.update(delivery.acked.values())
        result.failed += [
            f"line {window[index].line}: {type(error).__name__}: {error}"
            for index, error in delivery.errors()
        ]
        on_progress(len(window))
        if delivery.failed:
            rest = sum(1 for _ in pending)
            if rest:
                result.failed.append(f"{rest} later line(s) not sent: Kafka stopped taking them")
            break
    return result
