"""The one sender (cronstream.kafka.clients.send) and its users: who was acknowledged, who not."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError

from cronstream import publish
from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.publish import sender


class Metadata:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class FakeProducer:
    """Acknowledges each value into partition len(value) % 3, except as told: values in
    `refuse` fail in send() (never sent), values in `fail` are sent and not acknowledged."""

    def __init__(
        self,
        refuse: dict[bytes, Exception] | None = None,
        fail: dict[bytes, Exception] | None = None,
    ) -> None:
        self.refuse = refuse or {}
        self.fail = fail or {}
        self.sent: list[bytes | None] = []

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list[Any]
    ) -> asyncio.Future[Any]:
        if value in self.refuse:
            raise self.refuse[value]
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.fail:
            future.set_exception(self.fail[value])
        else:
            future.set_result(Metadata(len(value or b"") % 3))
        return future


def messages(*values: bytes) -> list[Message]:
    return [Message("t", value, b"k") for value in values]


async def test_all_acknowledged_with_their_partitions() -> None:
    delivery = await clients.send(FakeProducer(), messages(b"a", b"bb", b"ccc"))
    assert delivery.acked == {0: 1, 1: 2, 2: 0}
    assert delivery.errors() == []


async def test_partial_failure_names_which_were_sent_and_which_not() -> None:
    too_large = MessageSizeTooLargeError()
    lost = NotLeaderForPartitionError()
    producer = FakeProducer(refuse={b"big": too_large}, fail={b"lost": lost})
    delivery = await clients.send(producer, messages(b"a", b"big", b"lost", b"d"))
    assert sorted(delivery.acked) == [0, 3]  # a refused record does not stop the rest
    assert delivery.refused == {1: too_large}
    assert delivery.failed == {2: lost}
    assert delivery.errors() == [(1, too_large), (2, lost)]


async def test_kafka_unreachable_stops_sending_and_fails_the_rest() -> None:
    down = KafkaTimeoutError()
    producer = FakeProducer(refuse={b"b": down})
    delivery = await clients.send(producer, messages(b"a", b"b", b"c", b"d"))
    assert producer.sent == [b"a"]  # nothing more is tried once Kafka is away
    assert delivery.acked == {0: 1}
    assert delivery.failed == {1: down, 2: down, 3: down}


async def test_publish_reports_failed_lines_by_number() -> None:
    producer = FakeProducer(fail={b"two": NotLeaderForPartitionError("gone")})
    records = [publish.PublishLine(n, b"k", value, []) for n, value in [(3, b"one"), (5, b"two")]]
    progress: list[int] = []
    result = await publish.send(producer, "t", records, progress.append)
    assert result.sent == 1
    assert dict(result.partitions) == {0: 1}
    [failure] = result.failed
    assert failure.startswith("line 5: NotLeaderForPartitionError:")
    assert progress == [2]


async def test_publish_stops_at_the_window_where_kafka_went_away(monkeypatch: Any) -> None:
    """Later lines, maybe of the same key, must not overtake lines Kafka did not take."""
    monkeypatch.setattr(sender, "WINDOW", 2)
    producer = FakeProducer(refuse={b"v2": KafkaTimeoutError()})
    values = [f"v{n}".encode() for n in range(1, 7)]
    records = [publish.PublishLine(n, b"order-1", value, []) for n, value in enumerate(values, 1)]
    result = await publish.send(producer, "t", records)
    assert producer.sent == [b"v1"]
    assert result.sent == 1
    assert result.failed[0].startswith("line 2: KafkaTimeoutError")
    assert result.failed[-1] == "4 later line(s) not sent: Kafka stopped taking them"
