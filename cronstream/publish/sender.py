"""The send pass of publish: PublishLines to one topic, in order, each acknowledged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from aiokafka import AIOKafkaProducer

from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.publish.lines import PublishLine

# Sends awaited together; bounds memory while keeping the producer's pipeline full.
WINDOW = 2000


@dataclass
class PublishResult:
    sent: int = 0
    partitions: Counter[int] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[PublishLine],
    on_progress: Callable[[int], None] = lambda _: None,
) -> PublishResult:
    """Send records in order, WINDOW at a time, each acknowledged by Kafka (acks=all).

    A record too large is reported and the rest go on; once Kafka fails to take one
    (unreachable), nothing after it is sent: later records of a key must not overtake it.
    """
    result = PublishResult()
    pending = iter(records)
    while window := list(islice(pending, WINDOW)):
        delivery = await clients.send(
            producer, [Message(topic, item.value, item.key, item.headers) for item in window]
        )
        result.sent += len(delivery.acked)
        result.partitions.update(delivery.acked.values())
        result.failed += [
            f"line {window[index].line}: {type(error).__name__}: {error}"
            for index, error in delivery.errors()
        ]
        on_progress(len(window))
        if delivery.failed:
            rest = sum(1 for _ in pending)
            if rest:
                result.failed.append(f"{rest} later line(s) not sent: Kafka stopped taking them")
            break
    return result
