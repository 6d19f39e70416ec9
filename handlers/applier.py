"""The checkpoint protocol: a batch's effects and its Kafka offsets commit together.

Per batch (which may span partitions), in one Postgres transaction:

1. lock the checkpoint row of every (consumer, topic, partition) in the batch, in a
   fixed order (SELECT ... FOR UPDATE);
2. drop records at or below their partition's checkpoint: already applied (except, in
   a re-apply replay, those at or below `reapply_through` and above the replay's
   recorded position: applied again, once each);
3. apply the rest through the handlers, one partition at a time in offset order
   (handlers/dispatch.py); records that cannot be applied (undecodable, no handler,
   handler still failing after its retries) are sent to the dead-letter sink, which
   must be durable before this transaction commits (handlers/dead_letters.py);
4. set each checkpoint to its partition's last offset in the batch (and, in a replay,
   its position in `replay_positions`); COMMIT.

Failures are classified (handlers/failures.py). An outage (Postgres or Kafka
unreachable, a lock or statement timeout on the protocol's own queries, a deadlock)
raises `Outage`; the caller retries the batch, and any part of it already committed is
then dropped as duplicates. Anything else is the records' fault: a handler failing or
hanging (each attempt bounded by `handler_timeout`) is retried per event and then
dead-lettered; a failure outside any handler is narrowed by applying the batch in
halves until the record that causes it stands alone, and that record is dead-lettered.
A dead letter is sent once per record while the process lives.

The caller acknowledges records to Kafka only after `apply` returned, so Kafka's
committed offset never passes a durable checkpoint. After a crash, redelivered records
fall at or below their checkpoint and are dropped in step 2. The row lock also fences
a zombie worker still holding a batch of a reassigned partition: its transaction waits,
then sees the advanced checkpoint and drops the duplicates.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter
from typing import NamedTuple

import asyncpg

from cronstream.config.topics import TopicFormat
from cronstream.handlers.dead_letters import DeadLetterLedger, DeadLetterSink
from cronstream.handlers.decoding import Decoders
from cronstream.handlers.dispatch import Dispatcher
from cronstream.handlers.failures import Outage, is_outage
from cronstream.handlers.outcomes import Outcome
from cronstream.handlers.records import POSITION, ConsumedRecord, grouped
from cronstream.handlers.registry import Router
from cronstream.handlers.sql import query
from cronstream.kafka.structs import PartitionKey
from cronstream.runtime.retry import RetryPolicy
from cronstream.runtime.untrusted import safe_text

log = logging.getLogger(__name__)

_OFFSET = itemgetter(2)  # a ConsumedRecord's offset


class Held(NamedTuple):
    """A locked partition: its checkpoint, and how far the replay applying it got (-1:
    not a replay, or nothing yet)."""

    checkpoint: int
    replayed: int


class BatchApplier:
    """Applies batches for one consumer group under the checkpoint protocol."""

    def __init__(
        self,
        consumer: str,
        route: Router,
        dead_letter: DeadLetterSink,
        dlq_topic: Callable[[str], str],
        retry: RetryPolicy,
        handler_timeout: float = 60.0,
        reapply_through: Mapping[PartitionKey, int] | None = None,
        formats: Mapping[str, TopicFormat] | None = None,
        replay_id: int | None = None,
    ) -> None:
        """`formats`: each input topic's format; a topic not named carries envelopes.
        `replay_id` and `reapply_through`: a replay's (streams/replay/)."""
        self.consumer = consumer
        self.retry = retry
        self.letters = DeadLetterLedger(consumer, dead_letter, dlq_topic)
        self.dispatch = Dispatcher(route, Decoders(formats), self.letters, retry, handler_timeout)
        # A replay records how far it applied each partition in every batch's
        # transaction. In a re-apply replay, records at or below `reapply_through` were
        # applied before and are applied again, once each, under the checkpoint locks:
        # those above the recorded position, which a retried batch (COMMIT reached
        # Postgres, its acknowledgement was lost) or a resumed replay reads back.
        self.replay_id = replay_id
        self.reapply_through = dict(reapply_through or {})
        if self.reapply_through and replay_id is None:
            raise ValueError("a re-apply needs a replay id to record its positions under")

    def _fresh(self, key: PartitionKey, offset: int, held: Held) -> bool:
        """Above the checkpoint, or in the range being re-applied and not re-applied yet."""
        if offset > held.checkpoint:
            return True
        return held.replayed < offset <= self.reapply_through.get(key, -1)

    def _fresh_of(
        self, key: PartitionKey, batch: list[ConsumedRecord], held: Held
    ) -> list[ConsumedRecord]:
        """The records of `batch` (one partition's, in offset order) to apply."""
        if key not in self.reapply_through:  # those above the checkpoint
            return batch[bisect_right(batch, held.checkpoint, key=_OFFSET) :]
        return [r for r in batch if self._fresh(key, r.offset, held)]

    async def apply(
        self,
        connection: asyncpg.Connection,
        records: Sequence[ConsumedRecord],
    ) -> Outcome:
        """Apply one batch; raises Outage when Postgres or Kafka is unavailable.

        Any other failure is narrowed down: the batch is applied in halves until the
        record(s) that cause it stand alone; those are dead-lettered, the rest applied.
        When it returns, the fate of every record is durable: applied, dropped as a
        duplicate or dead-lettered. Only then may the caller acknowledge them to Kafka.
        """
        ordered = sorted(records, key=POSITION)
        return await self._apply_or_narrow(connection, ordered)

    async def _apply_or_narrow(
        self, connection: asyncpg.Connection, records: list[ConsumedRecord]
    ) -> Outcome:
        try:
            return await self._apply(connection, records)
        except Exception as error:
            if is_outage(error) or connection.is_closed():
                raise Outage(f"{type(error).__name__}: {error}") from error
            if len(records) == 1:
                return await self._dead_letter_alone(connection, records[0], error)
            log.warning(
                "batch of %d failed (%s: %s); applying it in halves to find the record(s) "
                "that cause it",
                len(records),
                type(error).__name__,
                safe_text(str(error), 300),
            )
        # Halves of a list ordered by (topic, partition, offset): every partition's
        # records in the first half precede its records in the second.
        half = len(records) // 2
        first = await self._apply_or_narrow(connection, records[:half])
        second = await self._apply_or_narrow(connection, records[half:])
        return first.merge(second)

    async def _dead_letter_alone(
        self, connection: asyncpg.Connection, record: ConsumedRecord, error: Exception
    ) -> Outcome:
        """Dead-letter one record that fails a batch on its own, and move past it."""
        key = (record.topic, record.partition)
        outcome = Outcome()
        async with self._locked(connection, [key]) as locked:
            checkpoint = locked[key].checkpoint
            if not self._fresh(key, record.offset, locked[key]):
                outcome.duplicates_by_topic[record.topic] = 1
                outcome.checkpoints[key] = checkpoint
                return outcome
            reason = f"fails its batch: {type(error).__name__}: {error}"
            self.letters.reject(outcome, record, reason, attempts=1)
            await self.letters.send(connection, outcome.dead_letters)
            outcome.checkpoints[key] = max(checkpoint, record.offset)
            await self._advance(connection, outcome.checkpoints, {key: record.offset})
        self.letters.forget(outcome.checkpoints)
        return outcome

    async def _apply(
        self, connection: asyncpg.Connection, records: Sequence[ConsumedRecord]
    ) -> Outcome:
        partitions = grouped(records)  # ordered by `apply`, and so each half of them
        outcome = Outcome()
        last = {key: batch[-1].offset for key, batch in partitions.items()}
        async with self._locked(connection, list(partitions)) as locked:
            for key, batch in partitions.items():
                fresh = self._fresh_of(key, batch, locked[key])
                outcome.duplicates_by_topic[key[0]] += len(batch) - len(fresh)
                await self.dispatch.apply_partition(connection, fresh, outcome)
                outcome.checkpoints[key] = max(locked[key].checkpoint, last[key])
            if outcome.dead_letters:
                # Durable before the checkpoint passes them: a crash in between sends
                # them again (at-least-once in the dead-letter topic), never loses them.
                await self.letters.send(connection, outcome.dead_letters)
            await self._advance(connection, outcome.checkpoints, last)
        self.letters.forget(outcome.checkpoints)  # never sent again
        return outcome

    @asynccontextmanager
    async def _locked(
        self, connection: asyncpg.Connection, keys: list[PartitionKey]
    ) -> AsyncIterator[dict[PartitionKey, Held]]:
        """A transaction holding the checkpoint rows of `keys` (created before it where
        missing), locked in a fixed order; yields each one's checkpoint and how far this
        replay applied it."""
        topics = [topic for topic, _ in keys]
        numbers = [partition for _, partition in keys]
        await connection.execute(query("checkpoints_ensure"), self.consumer, topics, numbers)
        async with connection.transaction():
            rows = await connection.fetch(query("checkpoints_lock"), self.consumer, topics, numbers)
            replayed: dict[PartitionKey, int] = {}
            if self.replay_id is not None:
                positions = await connection.fetch(
                    query("replay_positions_of"), self.replay_id, topics, numbers
                )
                replayed = {(row["topic"], row["partition"]): row["offset"] for row in positions}
            keys_of = [(row["topic"], row["partition"]) for row in rows]
            yield {
                key: Held(row["offset"], replayed.get(key, -1))
                for key, row in zip(keys_of, rows, strict=True)
            }

    async def _advance(
        self,
        connection: asyncpg.Connection,
        checkpoints: dict[PartitionKey, int],
        last: dict[PartitionKey, int],
    ) -> None:
        """The checkpoints, and (a replay) the last offset of each partition it applied."""
        for sql, owner, offsets in (
            ("checkpoints_advance", self.consumer, checkpoints),
            ("replay_positions_advance", self.replay_id, last),
        ):
            if owner is None:
                continue
            advanced = sorted(offsets.items())
            await connection.execute(
                query(sql),
                owner,
                [topic for (topic, _), _ in advanced],
                [partition for (_, partition), _ in advanced],
                [offset for _, offset in advanced],
            )
