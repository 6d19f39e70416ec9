"""The one sender (cronstream.kafka.clients.send) and its users: who was acknowledged, who not."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError
from aiokafka.partitioner import DefaultPartitioner

from cronstream import publish
from cronstream.kafka import clients
from cronstream.kafka.clients import Message
from cronstream.publish import sender


class Metadata:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class FakeBatch:
    """A batch of at most `capacity` records, as aiokafka's BatchBuilder appends them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values: list[bytes | None] = []
        self.closed = False

    def append(
        self, *, timestamp: None, key: bytes | None, value: bytes | None, headers: list[Any]
    ) -> object | None:
        assert not self.closed
        if len(self.values) >= self.capacity:
            return None
        self.values.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Three partitions, batches of `capacity` records. A batch holding a value in
    `refuse` is not taken by send_batch (which raises), one holding a value in `fail` is
    taken and not acknowledged; the others are acknowledged."""

    def __init__(
        self,
        refuse: dict[bytes, Exception] | None = None,
        fail: dict[bytes, Exception] | None = None,
        capacity: int = 1,
    ) -> None:
        self.refuse = refuse or {}
        self.fail = fail or {}
        self.capacity = capacity
        self.sent: list[bytes | None] = []
        self.batches: list[tuple[int, list[bytes | None]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        assert batch.closed, "a batch is closed before it is queued"
        for value in batch.values:
            if value in self.refuse:
                raise self.refuse[value]
        self.sent += batch.values
        self.batches.append((partition, batch.values))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failing = [self.fail[value] for value in batch.values if value in self.fail]
        if failing:
            future.set_exception(failing[0])
        else:
            future.set_result(Metadata(partition))
        return future


def partition_of(key: bytes) -> int:
    """The partition aiokafka's own send() picks for `key` among three."""
    return int(DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]))


def messages(*values: bytes, key: bytes = b"k") -> list[Message]:
    return [Message("t", value, key) for value in values]


async def test_all_acknowledged_with_the_partitions_send_would_pick() -> None:
    keys = [b"a:1", b"a:2", b"b:1", b"c:9"]
    delivery = await clients.send(FakeProducer(), [Message("t", b"v", key) for key in keys])
    assert delivery.acked == {index: partition_of(key) for index, key in enumerate(keys)}
    assert len(set(delivery.acked.values())) > 1  # the keys spread over partitions
    assert delivery.errors() == []


async def test_a_key_keeps_its_order_across_batches() -> None:
    producer = FakeProducer(capacity=2)
    values = [f"v{n}".encode() for n in range(7)]
    delivery = await clients.send(producer, messages(*values, key=b"order-1"))
    assert len(delivery.acked) == 7
    assert producer.sent == values
    assert [len(batch) for _, batch in producer.batches] == [2, 2, 2, 1]


async def test_records_go_one_batch_per_partition_not_one_future_each() -> None:
    producer = FakeProducer(capacity=1000)
    keys = [f"k{n}".encode() for n in range(60)]
    delivery = await clients.send(producer, [Message("t", key, key) for key in keys])
    assert len(delivery.acked) == 60
    assert sorted(partition for partition, _ in producer.batches) == [0, 1, 2]
    for partition, batch in producer.batches:
        assert batch == [key for key in keys if partition_of(key) == partition]


async def test_partial_failure_names_which_were_sent_and_which_not() -> None:
    lost = NotLeaderForPartitionError()
    big = b"x" * (clients.MAX_REQUEST_SIZE + 1)
    producer = FakeProducer(fail={b"lost": lost})
    delivery = await clients.send(producer, messages(b"a", big, b"lost", b"d"))
    assert sorted(delivery.acked) == [0, 3]  # a refused record does not stop the rest
    assert list(delivery.refused) == [1]
    assert isinstance(delivery.refused[1], MessageSizeTooLargeError)
    assert big not in producer.sent  # refused before anything was sent
    assert delivery.failed == {2: lost}
    assert delivery.errors() == [(1, delivery.refused[1]), (2, lost)]


async def test_a_batch_not_acknowledged_fails_every_record_in_it_and_only_those() -> None:
    lost = NotLeaderForPartitionError()
    producer = FakeProducer(fail={b"v2": lost}, capacity=2)
    delivery = await clients.send(producer, messages(b"v0", b"v1", b"v2", b"v3", b"v4"))
    assert delivery.failed == {2: lost, 3: lost}  # v2's batch: v2 and v3
    assert sorted(delivery.acked) == [0, 1, 4]


async def test_kafka_unreachable_stops_sending_and_fails_the_rest() -> None:
    down = KafkaTimeoutError()
    producer = FakeProducer(refuse={b"b": down})
    delivery = await clients.send(producer, messages(b"a", b"b", b"c", b"d"))
    assert producer.sent == [b"a"]  # nothing more is tried once Kafka is away
    assert delivery.acked == {0: partition_of(b"k")}
    assert delivery.failed == {1: down, 2: down, 3: down}


async def test_a_batch_refused_fails_the_records_of_batches_not_yet_queued() -> None:
    """An open batch of another partition, begun before the refusal, is not sent either."""
    down = KafkaTimeoutError()
    other = next(key for key in (b"b", b"c", b"d", b"e") if partition_of(key) != partition_of(b"a"))
    producer = FakeProducer(refuse={b"a1": down}, capacity=1)
    batch = [Message("t", b"a1", b"a"), Message("t", b"o1", other), Message("t", b"a2", b"a")]
    delivery = await clients.send(producer, batch)
    assert producer.sent == []
    assert delivery.failed == {0: down, 1: down, 2: down}


async def test_metadata_that_never_comes_fails_every_record() -> None:
    down = KafkaTimeoutError()

    class NoMetadata(FakeProducer):
        async def partitions_for(self, topic: str) -> set[int]:
            raise down

    delivery = await clients.send(NoMetadata(), messages(b"a", b"b"))
    assert delivery.failed == {0: down, 1: down}
    assert delivery.acked == {}


async def test_publish_reports_failed_lines_by_number() -> None:
    producer = FakeProducer(fail={b"two": NotLeaderForPartitionError("gone")})
    records = [publish.PublishLine(n, b"k", value, []) for n, value in [(3, b"one"), (5, b"two")]]
    progress: list[int] = []
    result = await publish.send(producer, "t", records, progress.append)
    assert result.sent == 1
    assert dict(result.partitions) == {partition_of(b"k"): 1}
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
