"""BatchApplier against real Postgres: a failure outside any handler is narrowed down."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka.errors import KafkaTimeoutError

from cronstream.handlers.applier import BatchApplier
from cronstream.handlers.failures import DeadLettersNotSent, Outage
from cronstream.handlers.outcomes import DeadLetter
from cronstream.runtime.retry import RetryPolicy
from tests.integration.applier_helpers import Sink, records, route


def applier(sink: Sink) -> BatchApplier:
    return BatchApplier("c", route, sink, lambda t: f"{t}.dlq", RetryPolicy(2, 0.01, 0.01))


async def counted(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM event_counts"))


async def test_a_record_that_fails_its_batch_outside_a_handler_is_narrowed_down(
    connection: asyncpg.Connection,
) -> None:
    sink = Sink()
    batch = records(["count"] * 7 + ["explodes"] + ["count"] * 8)
    outcome = await applier(sink).apply(connection, batch)
    assert outcome.applied == 15
    assert [(d.record.partition, d.record.offset) for d in sink.sent] == [(1, 3)]
    assert "fails its batch: LookupError: cannot route explodes" in sink.sent[0].error
    assert await counted(connection) == 15
    rows = await connection.fetch('SELECT partition, "offset" FROM checkpoints ORDER BY 1')
    assert [(r["partition"], r["offset"]) for r in rows] == [(0, 7), (1, 7)]


async def test_a_dead_letter_is_sent_once_even_when_its_batch_is_retried(
    database_url: str, connection: asyncpg.Connection
) -> None:
    sink = Sink()
    sink.after_send.append(connection)
    batch = records(["count", "no_such_type", "count", "count"])
    worker = applier(sink)
    with pytest.raises(Outage):
        await worker.apply(connection, batch)
    retry = await asyncpg.connect(database_url)
    try:
        outcome = await worker.apply(retry, batch)
        assert outcome.applied == 3
        assert len(outcome.dead_letters) == 1
        assert len(sink.sent) == 1, "the retry must not send the dead letter again"
        recorded = await retry.fetch("SELECT error FROM dead_letters")
        assert [r["error"] for r in recorded] == ["no handler for event type 'no_such_type'"]
    finally:
        await retry.close()


class HalfFailingSink(Sink):
    """Acknowledges the first letter of its first call, then reports Kafka gone."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    async def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self.calls.append([letter.record.offset for letter in letters])
        if len(self.calls) == 1:
            raise DeadLettersNotSent(letters[:1], KafkaTimeoutError())
        self.sent.extend(letters)


async def test_dead_letters_acknowledged_before_a_failed_send_are_not_sent_again(
    connection: asyncpg.Connection,
) -> None:
    sink = HalfFailingSink()
    batch = [r for r in records(["no_such_type"] * 4) if r.partition == 0]  # offsets 0, 1
    worker = applier(sink)
    with pytest.raises(Outage):
        await worker.apply(connection, batch)
    outcome = await worker.apply(connection, batch)
    assert len(outcome.dead_letters) == 2
    assert sink.calls == [[0, 1], [1]]
