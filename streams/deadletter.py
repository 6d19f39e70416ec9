"""The dead-letter topic: records a worker could not apply, with why and where from."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from cronstream import kafka
from cronstream.settings import Settings
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


def headers(letter: DeadLetter, consumer: str) -> list[tuple[str, bytes]]:
    """The original headers, then ours describing the failure."""
    record = letter.record
    return [
        *record.headers,
        (ERROR, letter.error.encode()[:MAX_ERROR_BYTES]),
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
        futures = [
            await self.producer.send(
                self.settings.dlq_topic(letter.record.topic),
                value=letter.record.value,
                key=letter.record.key,
                headers=headers(letter, self.settings.consumer_group),
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
