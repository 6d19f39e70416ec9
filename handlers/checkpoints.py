"""The checkpoint protocol: a batch's effects and its Kafka offsets commit together.

Per batch (which may span partitions), in one Postgres transaction:

1. lock the checkpoint row of every (consumer, topic, partition) in the batch, in a
   fixed order (SELECT ... FOR UPDATE);
2. drop records at or below their partition's checkpoint: already applied (except, in
   a re-apply replay, those at or below `reapply_through`: applied again, once each);
3. apply the rest through the handlers, one partition at a time in offset order;
   records that cannot be applied (undecodable, no handler, handler still failing
   after its retries) are sent to the dead-letter sink, which must be durable before
   this transaction commits;
4. set each checkpoint to its partition's last offset in the batch; COMMIT.

Failures are classified. An outage (Postgres or Kafka unreachable, a lock or statement
timeout on the protocol's own queries, a deadlock) raises `Outage`; the caller retries
the batch, and any part of it already committed is then dropped as duplicates.
Anything else is the records' fault: a handler failing or hanging (each attempt
bounded by `handler_timeout`) is retried per event and then dead-lettered; a failure
outside any handler is narrowed by applying the batch in halves until the record that
causes it stands alone, and that record is dead-lettered. A dead letter is sent once
per record while the process lives.

The caller acknowledges records to Kafka only after `apply` returned, so Kafka's
committed offset never passes a durable checkpoint. After a crash, redelivered records
fall at or below their checkpoint and are dropped in step 2. The row lock also fences
a zombie worker still holding a batch of a reassigned partition: its transaction waits,
then sees the advanced checkpoint and drops the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

import asyncpg
from aiokafka.errors import KafkaError

from cronstream.config.topics import ENVELOPE, TopicFormat
from cronstream.errors import CronstreamError
from cronstream.events import formats as topic_formats
from cronstream.events.envelope import EnvelopeError, Event, header_trace_id
from cronstream.events.formats import Decoder
from cronstream.handlers.registry import Handler, describe
from cronstream.handlers.sql import query
from cronstream.kafka.salvage import unreadable_header
from cronstream.runtime.logs import trace, trace_id_var
from cronstream.runtime.retry import RetryPolicy
from cronstream.runtime.untrusted import safe_text

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
Router = Callable[[str, str], Handler | None]
"""(topic, event type) -> the handler, or None when nothing handles it."""


class Record(NamedTuple):
    """A Kafka record as the protocol sees it, whatever client consumed it.

    A NamedTuple rather than a frozen dataclass: one is built per record consumed, and
    a tuple is several times cheaper to build."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def trace_id(self) -> str | None:
        return header_trace_id(self.headers)


def consumed(message: Any, headers: Iterable[tuple[str, bytes | None]]) -> Record:
    """A record as a Kafka client consumed it (aiokafka's ConsumerRecord, faust's
    Message: the same attributes), with its headers as bytes."""
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.value,
        message.key,
        tuple((name, value or b"") for name, value in headers),  # a header may have no value
    )


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    error: str
    attempts: int


def _where(record: Record) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


# Error texts quote untrusted input; this bounds what one record can put in a row.
MAX_ERROR_CHARS = 2000

DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]
"""Sends dead letters and returns once they are durable (e.g. acknowledged by Kafka);
raises DeadLettersNotSent, naming those that were, when some were not."""


class DeadLettersNotSent(CronstreamError):
    """Some dead letters were not sent (Kafka unavailable); `sent` were."""

    retriable = True

    def __init__(self, sent: Sequence[DeadLetter], cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.sent = list(sent)


@dataclass
class Outcome:
    """A batch's fate: counts per topic (for metrics), dead letters, new checkpoints,
    and the trace ids of the events given to handlers (distinct, in offset order)."""

    applied_by_topic: Counter[str] = field(default_factory=Counter)
    duplicates_by_topic: Counter[str] = field(default_factory=Counter)
    without_event: int = 0  # records that carry no event (Debezium tombstones)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    checkpoints: dict[TopicPartition, int] = field(default_factory=dict)
    trace_ids: dict[str, None] = field(default_factory=dict)  # an ordered set
    trace_id: str | None = None  # the batch's own, set by whoever runs it (BatchLoop)

    @property
    def applied(self) -> int:
        return self.applied_by_topic.total()

    @property
    def duplicates(self) -> int:
        return self.duplicates_by_topic.total()

    def merge(self, later: Outcome) -> Outcome:
        """This outcome followed by a later one of the same batch."""
        return Outcome(
            applied_by_topic=self.applied_by_topic + later.applied_by_topic,
            duplicates_by_topic=self.duplicates_by_topic + later.duplicates_by_topic,
            without_event=self.without_event + later.without_event,
            dead_letters=self.dead_letters + later.dead_letters,
            checkpoints=self.checkpoints | later.checkpoints,
            trace_ids=self.trace_ids | later.trace_ids,
            trace_id=self.trace_id,
        )


class Outage(CronstreamError):
    """Postgres or Kafka unavailable mid-batch; nothing of the batch was committed. Retry it."""

    retriable = True


# Raised inside a handler, these say the database is busy, not that the events are bad.
# (A statement timeout in a handler counts as the handler's failure: it may be the events.)
_TRANSIENT_IN_HANDLERS = (
    asyncpg.LockNotAvailableError,  # lock_timeout: e.g. a zombie still holds a checkpoint row
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

# Failures that say nothing about the records: the same batch may pass once they clear.
_OUTAGES = (
    *_TRANSIENT_IN_HANDLERS,
    OSError,  # includes ConnectionError and TimeoutError
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,  # statement_timeout outside a handler
    KafkaError,  # the dead-letter producer; its size error is handled where it is sent
)


def is_outage(error: BaseException) -> bool:
    """Our own retriable errors (Outage, DatabaseUnavailable, ...) or a driver's."""
    retriable = isinstance(error, CronstreamError) and error.retriable
    return retriable or isinstance(error, _OUTAGES)


def _by_partition(records: Sequence[Record]) -> dict[TopicPartition, list[Record]]:
    partitions: dict[TopicPartition, list[Record]] = defaultdict(list)
    for record in records:
        partitions[(record.topic, record.partition)].append(record)
    return {tp: sorted(recs, key=lambda r: r.offset) for tp, recs in sorted(partitions.items())}


_TRACE_ID = attrgetter("trace_id")


Routed = tuple[Record, Event, Handler | None]


def _runs(routed: list[Routed]) -> Iterator[list[Routed]]:
    """Consecutive records that go to one handler (a Debezium stream's created, updated
    and deleted events all go to the projection), so each handler call sees its events
    in offset order."""
    for _, run in groupby(routed, key=itemgetter(2)):
        yield list(run)


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
        reapply_through: Mapping[TopicPartition, int] | None = None,
        formats: Mapping[str, TopicFormat] | None = None,
    ) -> None:
        """`formats`: each input topic's format; a topic not named carries envelopes."""
        self.consumer = consumer
        self.route = route
        self.dead_letter = dead_letter
        self.dlq_topic = dlq_topic
        self.retry = retry
        self.handler_timeout = handler_timeout
        # Dead letters Kafka acknowledged whose checkpoint has not committed yet: a retried
        # or narrowed batch must not send them again.
        self._sent: set[tuple[str, int, int]] = set()
        # A re-apply replay (streams/replay.py): records at or below these offsets were
        # applied before and are applied again, once each, under the checkpoint locks;
        # `_reapplied` is how far a committed transaction of this process re-applied.
        self.reapply_through = dict(reapply_through or {})
        self._reapplied: dict[TopicPartition, int] = {}
        self._decoders: dict[str, tuple[str, Decoder]] = {
            topic: (topic_formats.what(given), topic_formats.decoder(given))
            for topic, given in (formats or {}).items()
        }
        self._envelopes = (topic_formats.what(ENVELOPE), topic_formats.decoder(ENVELOPE))

    def _fresh(self, tp: TopicPartition, offset: int, checkpoint: int) -> bool:
        """Above the checkpoint, or in the range being re-applied and not re-applied yet."""
        if offset > checkpoint:
            return True
        return self._reapplied.get(tp, -1) < offset <= self.reapply_through.get(tp, -1)

    def _committed(self, last: dict[TopicPartition, int]) -> None:
        """A transaction covering records up to `last` committed: never re-apply them again."""
        for tp, offset in last.items():
            if tp in self.reapply_through:
                self._reapplied[tp] = max(self._reapplied.get(tp, -1), offset)

    async def apply(
        self,
        connection: asyncpg.Connection,
        records: Sequence[Record],
    ) -> Outcome:
        """Apply one batch; raises Outage when Postgres or Kafka is unavailable.

        Any other failure is narrowed down: the batch is applied in halves until the
        record(s) that cause it stand alone; those are dead-lettered, the rest applied.
        When it returns, the fate of every record is durable: applied, dropped as a
        duplicate or dead-lettered. Only then may the caller acknowledge them to Kafka.
        """
        ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
        return await self._apply_or_narrow(connection, ordered)

    async def _apply_or_narrow(
        self, connection: asyncpg.Connection, records: list[Record]
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
        self, connection: asyncpg.Connection, record: Record, error: Exception
    ) -> Outcome:
        """Dead-letter one record that fails a batch on its own, and move past it."""
        tp = (record.topic, record.partition)
        outcome = Outcome()
        await connection.execute(
            query("checkpoints_ensure"), self.consumer, [record.topic], [record.partition]
        )
        async with connection.transaction():
            [row] = await connection.fetch(
                query("checkpoints_lock"), self.consumer, [record.topic], [record.partition]
            )
            if not self._fresh(tp, record.offset, row["offset"]):
                outcome.duplicates_by_topic[record.topic] = 1
                outcome.checkpoints[tp] = row["offset"]
                return outcome
            reason = f"fails its batch: {type(error).__name__}: {error}"
            self._reject(outcome, record, reason, attempts=1)
            await self._send_dead_letters(connection, outcome.dead_letters)
            await self._advance(connection, {tp: max(row["offset"], record.offset)})
            outcome.checkpoints[tp] = max(row["offset"], record.offset)
        self._committed({tp: record.offset})
        self._forget_sent(outcome.checkpoints)
        return outcome

    async def _apply(
        self,
        connection: asyncpg.Connection,
        records: Sequence[Record],
    ) -> Outcome:
        partitions = _by_partition(records)
        topics = [topic for topic, _ in partitions]
        numbers = [partition for _, partition in partitions]
        outcome = Outcome()
        await connection.execute(query("checkpoints_ensure"), self.consumer, topics, numbers)
        async with connection.transaction():
            locked = {
                (row["topic"], row["partition"]): row["offset"]
                for row in await connection.fetch(
                    query("checkpoints_lock"), self.consumer, topics, numbers
                )
            }
            for tp, batch in partitions.items():
                checkpoint = locked[tp]
                fresh = [r for r in batch if self._fresh(tp, r.offset, checkpoint)]
                outcome.duplicates_by_topic[tp[0]] += len(batch) - len(fresh)
                await self._apply_partition(connection, fresh, outcome)
                outcome.checkpoints[tp] = max(checkpoint, batch[-1].offset)
            if outcome.dead_letters:
                # Durable before the checkpoint passes them: a crash in between sends
                # them again (at-least-once in the dead-letter topic), never loses them.
                await self._send_dead_letters(connection, outcome.dead_letters)
            await self._advance(connection, outcome.checkpoints)
        self._committed({tp: batch[-1].offset for tp, batch in partitions.items()})
        self._forget_sent(outcome.checkpoints)
        return outcome

    async def _advance(
        self, connection: asyncpg.Connection, checkpoints: dict[TopicPartition, int]
    ) -> None:
        advanced = sorted(checkpoints.items())
        await connection.execute(
            query("checkpoints_advance"),
            self.consumer,
            [topic for (topic, _), _ in advanced],
            [partition for (_, partition), _ in advanced],
            [offset for _, offset in advanced],
        )

    async def _send_dead_letters(
        self, connection: asyncpg.Connection, letters: list[DeadLetter]
    ) -> None:
        unsent = [letter for letter in letters if _where(letter.record) not in self._sent]
        if unsent:
            try:
                await self.dead_letter(unsent)
            except DeadLettersNotSent as error:
                self._sent.update(_where(letter.record) for letter in error.sent)
                raise Outage(f"dead letters not sent: {error}") from error
            self._sent.update(_where(letter.record) for letter in unsent)
        await self._record_dead_letters(connection, letters)

    def _forget_sent(self, committed: dict[TopicPartition, int]) -> None:
        """Dead letters at or below a committed checkpoint will never be sent again."""
        if self._sent:
            self._sent = {
                (topic, partition, offset)
                for topic, partition, offset in self._sent
                if offset > committed.get((topic, partition), -1)
            }

    async def _apply_partition(
        self, connection: asyncpg.Connection, records: list[Record], outcome: Outcome
    ) -> None:
        if not records:
            return
        topic = records[0].topic
        what, decode = self._decoders.get(topic, self._envelopes)
        handlers: dict[str, Handler | None] = {}  # by event type
        routed: list[Routed] = []
        for record in records:
            unreadable = unreadable_header(record.headers)
            if unreadable is not None:  # read by kafka_salvage: Kafka clients cannot
                self._reject(outcome, record, f"unreadable record: {unreadable}", attempts=1)
                continue
            try:
                event = decode(record.value, record.key, record.headers)
            except EnvelopeError as error:
                self._reject(outcome, record, f"invalid {what}: {error}", attempts=1)
                continue
            except Exception as error:  # e.g. RecursionError on absurdly nested JSON
                self._reject(outcome, record, f"undecodable: {type(error).__name__}", attempts=1)
                continue
            if event is None:  # carries no event (a Debezium tombstone): acknowledged
                outcome.without_event += 1
                continue
            if event.type not in handlers:
                handlers[event.type] = self.route(topic, event.type)
            routed.append((record, event, handlers[event.type]))
        for run in _runs(routed):
            handler = run[0][2]
            if handler is None:
                for record, event, _ in run:
                    self._reject(outcome, record, f"no handler for event type '{event.type}'", 1)
                continue
            events = [event for _, event, _ in run]
            # The handler's lines carry the events' trace id when they share one, else
            # the batch's; the batch line lists them all. Collected at C speed (map,
            # dict.fromkeys): ~0.1 us an event, against ~16 us an event applied.
            trace_ids = dict.fromkeys(map(_TRACE_ID, events))
            shared = next(iter(trace_ids)) if len(trace_ids) == 1 else None
            trace_ids.pop(None, None)
            outcome.trace_ids.update(cast(dict[str, None], trace_ids))
            if await self._attempt(connection, handler, events, shared) is None:
                outcome.applied_by_topic[topic] += len(run)
                continue
            # The run failed as a whole: find the event(s) that fail on their own.
            for record, event, _ in run:
                await self._apply_one(connection, handler, record, event, outcome)

    async def _apply_one(
        self,
        connection: asyncpg.Connection,
        handler: Handler,
        record: Record,
        event: Event,
        outcome: Outcome,
    ) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            error = await self._attempt(connection, handler, [event], event.trace_id)
            if error is None:
                outcome.applied_by_topic[record.topic] += 1
                return
            log.warning(
                "handler %s failed (attempt %d/%d): %s: %s",
                describe(handler),
                attempt,
                self.retry.attempts,
                type(error).__name__,
                error,
                extra={
                    "trace_id": event.trace_id,
                    "event_id": event.id,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            if attempt < self.retry.attempts:
                await self.retry.wait(attempt)
        message = f"handler {describe(handler)} failed: {type(error).__name__}: {error}"
        self._reject(outcome, record, message, self.retry.attempts)

    async def _attempt(
        self,
        connection: asyncpg.Connection,
        handler: Handler,
        events: list[Event],
        trace_id: str | None,
    ) -> Exception | None:
        """Run the handler inside a savepoint, its log lines tagged with `trace_id` (else
        the batch's); return its error, if any."""
        try:
            async with connection.transaction():
                async with asyncio.timeout(self.handler_timeout):
                    with trace(trace_id or trace_id_var.get()):
                        await handler(events, connection)
        except TimeoutError:
            if connection.is_closed():
                raise Outage("the connection closed while a handler timed out") from None
            return TimeoutError(f"did not finish within {self.handler_timeout:g}s")
        except Exception as error:
            if connection.is_closed() or isinstance(error, _TRANSIENT_IN_HANDLERS):
                # Not the events' fault: the whole batch waits and retries, and its
                # locks are released meanwhile, instead of dead-lettering valid events.
                raise Outage(f"{type(error).__name__}: {error}") from error
            return error
        return None

    def _reject(self, outcome: Outcome, record: Record, error: str, attempts: int) -> None:
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

    async def _record_dead_letters(
        self, connection: asyncpg.Connection, letters: list[DeadLetter]
    ) -> None:
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
