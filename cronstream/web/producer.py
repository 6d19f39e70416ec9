"""The surface's one Kafka producer, shared by POST /events and the /readyz Kafka check.

Started on first use, not with the surface: Kafka may be down when the worker starts,
and the surface must serve /healthz and /readyz all the same.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

from cronstream.config.settings import Settings
from cronstream.kafka import clients


class SharedProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> AIOKafkaProducer:
        """The producer, started now if none is running."""
        async with self.lock:
            if self.producer is None:
                producer = clients.producer(self.settings)
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self.producer = producer
            return self.producer

    async def drop(self, failed: AIOKafkaProducer | None) -> None:
        """Stop `failed` if it is still the current producer (a concurrent request may
        have replaced it already: that one is left alone)."""
        async with self.lock:
            if failed is None or self.producer is not failed:
                return
            self.producer = None
        with contextlib.suppress(Exception):
            await failed.stop()

    async def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None
