"""The dead-letter topic: records a worker could not apply, with why and where from."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from cronstream import kafka
from cronstream.settings import Settings
from cronstream.untrusted import safe_bytes
from handlers.checkpoints import DeadLetter

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


def headers(letter: DeadLetter, consumer: str) -> list[tuple[str, bytes]]:
    """The original headers, then ours describing the failure."""
    record = letter.record
    return [
        *record.headers,
        (ERROR, safe_bytes(letter.error, MAX_ERROR_BYTES)),
        (TOPIC, record.topic.encode()),
        (PARTITION, str(record.partition).encode()),
        (OFFSET, str(record.offset).encode()),
        (ATTEMPTS, str(letter.attempts).encode()),
        (CONSUMER, consumer.encode()),
    ]


class DeadLetterProducer:
    """Sends dead letters with the idempotent producer and waits for Kafka's acks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka clients must be created inside the running loop.
        self.producer = kafka.producer(self.settings)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def __call__(self, letters: Sequence[DeadLetter]) -> None:
        assert self.producer is not None, "start() first"
        futures = [await self._send(letter, with_value=True) for letter in letters]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for letter, result in zip(letters, results, strict=True):
            if isinstance(result, MessageSizeTooLargeError):
                # The record plus our headers is over the broker's limit: send where it
                # is instead of what it is; the original stays readable at its offset.
                await (await self._send(letter, with_value=False))
            elif isinstance(result, BaseException):
                raise result

    async def _send(self, letter: DeadLetter, with_value: bool) -> asyncio.Future[object]:
        assert self.producer is not None
        record = letter.record
        extra = [] if with_value else [(VALUE_OMITTED, b"too large for the dead-letter topic")]
        try:
            future: asyncio.Future[object] = await self.producer.send(
                self.settings.dlq_topic(record.topic),
                value=record.value if with_value else None,
                key=record.key,
                headers=headers(letter, self.settings.consumer_group) + extra,
            )
        except MessageSizeTooLargeError as error:  # refused before it left the client
            future = asyncio.get_running_loop().create_future()
            future.set_exception(error)
        return future
