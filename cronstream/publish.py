"""Publishing events: validate every input line first, then send with an idempotent producer."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from aiokafka import AIOKafkaProducer

from cronstream.envelope import (
    EnvelopeError,
    Event,
    decode,
    from_fields,
    json_object,
    new_trace_id,
)

# Sends awaited together; bounds memory while keeping the producer's pipeline full.
WINDOW = 2000


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Outcome:
    sent: int = 0
    partitions: Counter[int] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)


def parse_line(text: str, source: str) -> Event:
    """One JSONL line as an Event; id, occurred_at, trace_id and source may be omitted.

    The same rules as a worker's decoding: what a worker would dead-letter is refused.
    """
    try:
        event = decode(text.encode())  # every required field there: one fast, strict pass
    except EnvelopeError:
        pass  # perhaps only fields that may be omitted are missing
    else:
        if event.trace_id is None:
            return event.model_copy(update={"trace_id": new_trace_id()})
        return event
    data = json_object(text)
    data.setdefault("source", source)
    return from_fields(data)


def read_lines(stream: IO[str], source: str) -> Iterator[tuple[int, Event | LineError]]:
    """Number and parse each non-blank line of `stream`."""
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            yield number, parse_line(text, source)
        except EnvelopeError as error:
            yield number, LineError(number, str(error))


def check(stream: IO[str], source: str) -> tuple[int, list[LineError]]:
    """First pass: count valid lines and collect every invalid one."""
    valid = 0
    errors: list[LineError] = []
    for _, parsed in read_lines(stream, source):
        if isinstance(parsed, LineError):
            errors.append(parsed)
        else:
            valid += 1
    return valid, errors


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    events: Iterable[tuple[int, Event]],
    on_progress: Callable[[int], None] = lambda _: None,
) -> Outcome:
    """Send events in order; each is awaited until Kafka acknowledged it (acks=all)."""
    outcome = Outcome()
    window: list[tuple[int, asyncio.Future[Any]]] = []

    async def drain() -> None:
        results = await asyncio.gather(*(future for _, future in window), return_exceptions=True)
        for (line, _), result in zip(window, results, strict=True):
            if isinstance(result, BaseException):
                outcome.failed.append(f"line {line}: {type(result).__name__}: {result}")
            else:
                outcome.sent += 1
                outcome.partitions[result.partition] += 1
        on_progress(len(window))
        window.clear()

    for line, event in events:
        future = await producer.send(
            topic, value=event.encode(), key=event.kafka_key, headers=event.kafka_headers
        )
        window.append((line, future))
        if len(window) >= WINDOW:
            await drain()
    if window:
        await drain()
    return outcome
