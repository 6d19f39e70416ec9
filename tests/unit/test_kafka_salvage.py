"""The lenient record-batch reader: what aiokafka reads, it reads the same; what aiokafka
refuses (a header name that is not UTF-8), it reads byte for byte."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from cronstream.handlers.records import ConsumedRecord
from cronstream.kafka.salvage import parse, raw_name, readable, unreadable_header
from cronstream.streams.deadletter import HEADER_NAME, HEADER_VALUE, sendable_headers

TP = TopicPartition("orders", 1)
GZIP = 1


def batch(
    base: int,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    codec: int = 0,
) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, batch_size=1 << 20)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(
            delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=headers
        )
    built = bytearray(builder.build())
    built[0:8] = base.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(built)


def aiokafka_reads(
    data: bytes,
) -> list[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]:
    records = MemoryRecords(data)
    found = []
    while records.has_next():
        for record in records.next_batch():
            found.append(
                (record.offset, record.timestamp, record.key, record.value, list(record.headers))
            )
    return found


RECORDS = [
    (b"customer:1", b'{"a": 1}', [("trace_id", b"t1"), ("empty", b"")]),
    (None, b"no key", []),
    (b"tombstone", None, [("h\u00e9", b"utf-8 names are fine")]),
]


@pytest.mark.parametrize("codec", [0, GZIP])
def test_it_reads_what_aiokafka_reads_the_same(codec: int) -> None:
    data = batch(40, RECORDS, codec) + batch(43, RECORDS[:1], codec)
    ours = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in parse(TP, data, 0)]
    assert ours == aiokafka_reads(data)
    assert [r.offset for r in parse(TP, data, 0)] == [40, 41, 42, 43]
    assert all((r.topic, r.partition) == ("orders", 1) for r in parse(TP, data, 0))


def test_it_starts_at_the_offset_asked_and_stops_at_a_batch_cut_short() -> None:
    data = batch(40, RECORDS) + batch(43, RECORDS)
    assert [r.offset for r in parse(TP, data, 42)] == [42, 43, 44, 45]
    assert [r.offset for r in parse(TP, data[:-5], 0)] == [40, 41, 42]


def test_a_header_name_that_is_not_utf8_is_kept_byte_for_byte() -> None:
    good = batch(7, [(b"k", b"v", [("XXname", b"1"), ("ok", b"2")])])
    bad = good.replace(b"XXname", b"\xff\xfename")
    with pytest.raises(UnicodeDecodeError):
        aiokafka_reads(bad)
    [record] = parse(TP, bad, 0)
    (name, value), second = record.headers
    assert raw_name(name) == b"\xff\xfename" and value == b"1" and second == ("ok", b"2")
    assert not readable(name) and readable("ok") and readable("h\u00e9")
    reason = unreadable_header(record.headers)
    assert reason is not None and "#0" in reason and "\\xff\\xfename" in reason
    assert unreadable_header([("ok", b"2")]) is None
    # In the dead letter, the name's bytes travel as a value, in the original order.
    sent = sendable_headers(ConsumedRecord("orders", 1, 7, b"v", b"k", tuple(record.headers)))
    assert sent == [(HEADER_NAME, b"\xff\xfename"), (HEADER_VALUE, b"1"), ("ok", b"2")]
