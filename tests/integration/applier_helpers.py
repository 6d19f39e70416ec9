"""A batch of records for BatchApplier, its router and a dead-letter sink that records
what it was given (and can cut a connection right after a send)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.handlers.registry import Handler
from tests.integration.handlers_under_test import count
from tests.integration.workers import count_events

TOPIC = "t.applier"


def records(types: Sequence[str]) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(TOPIC, i % 2, i // 2, next(count_events(1, event_type=t, start=i)).encode())
        for i, t in enumerate(types)
    ]


class Sink:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.after_send: list[asyncpg.Connection] = []

    async def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self.sent.extend(letters)
        for connection in self.after_send:  # an outage right after Kafka acknowledged
            connection.terminate()
        self.after_send.clear()


def route(topic: str, event_type: str) -> Handler | None:
    if event_type == "explodes":  # a router bug: fails outside any handler's savepoint
        raise LookupError(f"cannot route {event_type}")
    return count if event_type == "count" else None
