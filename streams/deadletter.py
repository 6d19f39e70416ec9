"""The dead-letter topic: records a worker could not apply, with why and where from."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from cronstream.config.settings import Settings
from cronstream.handlers.failures import DeadLettersNotSent
from cronstream.handlers.outcomes import DeadLetter
from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.kafka.salvage import raw_name, readable
from cronstream.runtime.untrusted import safe_bytes

# Long enough for any message, short enough that the headers never push a record that
# fit its topic over the broker's size limit.
MAX_ERROR_BYTES = 1000

# Header names on every dead-lettered record.
ERROR = "dlq.error"
TOPIC = "dlq.original.topic"
PARTITION = "dlq.original.partition"
OFFSET = "dlq.original.offset"
ATTEMPTS = "dlq.attempts"
CONSUMER = "dlq.consumer"
VALUE_OMITTED = "dlq.value.omitted"
# A header whose name is not UTF-8 (see cronstream/kafka/salvage.py): Kafka clients,
# aiokafka included, cannot write such a name, so it travels as these two headers.
HEADER_NAME = "dlq.header.name"
HEADER_VALUE = "dlq.header.value"
ID = "dlq.id"


def letter_id(consumer: str, topic: str, partition: int, offset: int) -> str:
    """The same id on every copy of one record's dead letter from one consumer (a crash
    between Kafka's ack and the COMMIT sends it again), so a reader of `.dlq` can drop the
    copies. The consumer is part of it: two groups dead-lettering the same record send two
    letters, and dropping one would lose that group's failure. A hash, so the header stays
    32 bytes whatever the consumer name; a topic name has no newline, so the text is
    unambiguous."""
    text = f"{topic}\n{partition}\n{offset}\n{consumer}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def headers(letter: DeadLetter, consumer: str) -> list[tuple[str, bytes]]:
    """Our headers describing the failure (sent after the original ones)."""
    record = letter.record
    return [
        (ERROR, safe_bytes(letter.error, MAX_ERROR_BYTES)),
        (TOPIC, record.topic.encode()),
        (PARTITION, str(record.partition).encode()),
        (OFFSET, str(record.offset).encode()),
        (ATTEMPTS, str(letter.attempts).encode()),
        (CONSUMER, consumer.encode()),
        (ID, letter_id(consumer, record.topic, record.partition, record.offset).encode()),
    ]


class DeadLetterProducer:
    """Sends dead letters with the idempotent producer and waits for Kafka's acks."""

    def __init__(
        self,
        settings: Settings,
        consumer: str | None = None,
        dlq_topic: Callable[[str], str] | None = None,
    ) -> None:
        """`consumer` and `dlq_topic`: a rebuild's own (streams/replay/); by default the
        live group's, and `<topic>.dlq`."""
        self.settings = settings
        self.consumer = consumer or settings.consumer_group
        self.dlq_topic = dlq_topic or settings.dlq_topic
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka clients must be created inside the running loop.
        self.producer = clients.producer(self.settings)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def __call__(self, letters: Sequence[DeadLetter]) -> None:
        """Send and wait for every ack; on failure, say which letters did get through."""
        assert self.producer is not None, "start() first"
        whole = await clients.send(self.producer, [self._message(x, whole=True) for x in letters])
        # The record plus our headers is over a limit: send where it is instead of what
        # it is; the original stays readable at its offset.
        too_large: list[int] = []
        failures: list[BaseException] = []
        for index, error in whole.errors():
            if isinstance(error, MessageSizeTooLargeError):
                too_large.append(index)
            else:
                failures.append(error)
        sent = [letters[index] for index in sorted(whole.acked)]
        if too_large:
            bare = await clients.send(
                self.producer, [self._message(letters[index], whole=False) for index in too_large]
            )
            sent += [letters[too_large[index]] for index in sorted(bare.acked)]
            failures += [error for _, error in bare.errors()]
        if failures:
            raise DeadLettersNotSent(sent, failures[0])

    def _message(self, letter: DeadLetter, whole: bool) -> Message:
        """The record with our headers; or, when `whole` is false, our headers alone."""
        record = letter.record
        ours = headers(letter, self.consumer)
        if whole:
            key, value, sent_headers = record.key, record.value, [*sendable_headers(record), *ours]
        else:
            key, value = None, None
            sent_headers = [*ours, (VALUE_OMITTED, b"too large for the dead-letter topic")]
        if key is None and value is None:  # Kafka refuses a record with neither
            value = b""
            sent_headers.append((VALUE_OMITTED, b"the original value is null"))
        return Message(self.dlq_topic(record.topic), value, key, sent_headers)


def sendable_headers(record: ConsumedRecord) -> list[tuple[str, bytes]]:
    """The record's headers as a producer can write them, each name's bytes kept."""
    sendable: list[tuple[str, bytes]] = []
    for name, value in record.headers:
        if readable(name):
            sendable.append((name, value))
        else:
            sendable += [(HEADER_NAME, raw_name(name)), (HEADER_VALUE, value)]
    return sendable
