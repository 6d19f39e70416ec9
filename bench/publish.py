"""Publishing: `cronstream.publish.send` against a bare aiokafka producer, same events.

usage: python -m bench.publish [N]
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaProducer

from bench.common import events, report, settings, timed
from cronstream import kafka, publish


async def main(n: int) -> None:
    config = settings()
    batch = events(n)
    raw_topic, our_topic = f"{config.sync_topic}.raw", config.sync_topic
    await kafka.ensure_topics(config, [raw_topic, our_topic])

    raw = AIOKafkaProducer(
        **kafka.connection_options(config), enable_idempotence=True, acks="all", linger_ms=5
    )
    await raw.start()
    values = [(e.kafka_key, e.encode()) for e in batch]
    with timed() as baseline:
        futures = [await raw.send(raw_topic, value=v, key=k) for k, v in values]
        await asyncio.gather(*futures)
    await raw.stop()

    producer = kafka.producer(config)
    await producer.start()
    with timed() as ours:
        outcome = await publish.send(producer, our_topic, enumerate(batch, start=1))
    await producer.stop()
    assert outcome.sent == n and not outcome.failed
    report("publish", n, baseline, ours)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
