"""Dead letters as the protocol keeps them: built with a bounded, safe reason, logged,
sent to the sink once per record while the process lives, and recorded in the
`dead_letters` table in the batch's transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from cronstream.handlers.failures import DeadLettersNotSent, Outage
from cronstream.handlers.outcomes import DeadLetter, Outcome
from cronstream.handlers.records import ConsumedRecord, RecordPosition
from cronstream.handlers.sql import query
from cronstream.kafka.structs import PartitionKey
from cronstream.runtime.untrusted import safe_text

log = logging.getLogger(__name__)

# Error texts quote untrusted input; this bounds what one record can put in a row.
MAX_ERROR_CHARS = 2000

DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]
"""Sends dead letters and returns once they are durable (e.g. acknowledged by Kafka);
raises DeadLettersNotSent, naming those that were, when some were not."""


class DeadLetterLedger:
    """One consumer's dead letters: which were sent, and where they were recorded."""

    def __init__(
        self, consumer: str, sink: DeadLetterSink, dlq_topic: Callable[[str], str]
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self.dlq_topic = dlq_topic
        # Dead letters Kafka acknowledged whose checkpoint has not committed yet: a retried
        # or narrowed batch must not send them again.
        self.sent: set[RecordPosition] = set()

    def reject(self, outcome: Outcome, record: ConsumedRecord, error: str, attempts: int) -> None:
        """Add the record's dead letter to the batch's outcome, and say so."""
        error = safe_text(error, MAX_ERROR_CHARS)
        outcome.dead_letters.append(DeadLetter(record, error, attempts))
        log.error(
            "dead-lettered %s[%d]@%d to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.dlq_topic(record.topic),
            error,
            extra={"trace_id": record.trace_id},
        )

    async def send(self, connection: asyncpg.Connection, letters: list[DeadLetter]) -> None:
        """Send those not sent yet and wait until they are durable; record them all in
        the transaction open on `connection`. Raises Outage when some were not sent."""
        unsent = [letter for letter in letters if letter.record.position not in self.sent]
        if unsent:
            try:
                await self.sink(unsent)
            except DeadLettersNotSent as error:
                self.sent.update(letter.record.position for letter in error.sent)
                raise Outage(f"dead letters not sent: {error}") from error
            self.sent.update(letter.record.position for letter in unsent)
        await self._record(connection, letters)

    def forget(self, committed: dict[PartitionKey, int]) -> None:
        """Dead letters at or below a committed checkpoint will never be sent again."""
        if self.sent:
            self.sent = {
                (topic, partition, offset)
                for topic, partition, offset in self.sent
                if offset > committed.get((topic, partition), -1)
            }

    async def _record(self, connection: asyncpg.Connection, letters: list[DeadLetter]) -> None:
        await connection.execute(
            query("dead_letters_record"),
            self.consumer,
            [letter.record.topic for letter in letters],
            [letter.record.partition for letter in letters],
            [letter.record.offset for letter in letters],
            [self.dlq_topic(letter.record.topic) for letter in letters],
            [letter.error for letter in letters],
            [letter.attempts for letter in letters],
        )
