"""A page's rows sent to Kafka, and what Kafka made of them."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.schedulers.scan.rows import KEY_LIMIT, Rejected, Row, capped

Emitted = tuple[list[Row], list[Rejected]]
"""A page sent: the rows Kafka acknowledged, and those refused as too large."""


async def emit(producer: AIOKafkaProducer, topic: str, rows: list[Row]) -> Emitted:
    """Send a page; wait until Kafka acknowledged every record (acks=all).

    Returns the rows Kafka took and the ones the producer refused as too large. Any
    other failure (Kafka unreachable, say) raises: nothing of the page is marked.
    """
    delivery = await clients.send(
        producer, [Message(topic, row.value, row.kafka_key, row.headers) for row in rows]
    )
    # A broker whose max.message.bytes is below max_request_size refuses a whole
    # batch for one record, and aiokafka's idempotent producer cannot send to that
    # partition again (OutOfOrderSequenceNumber): no row can be told apart, so the
    # run fails with nothing of the page marked. Only what the client refused
    # unsent (over max_request_size) is the row's own fault.
    if delivery.failed:
        raise delivery.failed[min(delivery.failed)]
    sent = [rows[index] for index in sorted(delivery.acked)]
    too_large = [
        Rejected(
            rows[index].source_row,
            capped(rows[index].key, KEY_LIMIT),
            f"event of {len(rows[index].value)} bytes is larger than Kafka accepts "
            "(the producer's max_request_size)",
        )
        for index in sorted(delivery.refused)
    ]
    return sent, too_large
