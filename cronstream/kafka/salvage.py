"""Records aiokafka cannot parse, read byte for byte so they can be dead-lettered alone.

aiokafka (0.14) facts this module is built around:
- its record parser decodes header names as strict UTF-8 (the C extension and the pure
  Python one alike), and raises out of `getmany` on a name that is not: Kafka, and the
  Java clients, allow any bytes there;
- `getmany` drains partition after partition from its fetch buffer, so when it raises,
  other partitions' records may already be taken out of the buffer and their positions
  advanced: those records are lost to the caller, who must seek back to its own record
  of what was applied before polling again;
- the partition holding the record keeps raising on every poll: the fetch that returns
  it starts at the same position each time.

So after a failed poll the caller seeks back, then asks `salvage` for each assigned
partition's next records, fetched with aiokafka's own client and protocol classes but
parsed here, leniently: a header name that is not UTF-8 is kept as a `str` with its
bytes escaped (`surrogateescape`), so `raw_name` gives them back exactly. Where such a
record is found, `salvage` returns that partition's records up to and including it and
seeks the partition past it: the caller applies them like any poll, and the checkpoint
protocol dead-letters the unreadable one (it has a header name `readable` refuses).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import decode_varint

log = logging.getLogger(__name__)

# Record batch v2 (KIP-98): the fields read here and where they sit in its 61-byte header.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_MAGIC_V2 = 2
_COMPRESSION = 0x07
_TIMESTAMP_TYPE = 0x08
_CONTROL = 0x20
_DECOMPRESS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}
FETCH_BYTES = 1_048_576  # aiokafka's max_partition_fetch_bytes: the window its poll read
FETCH_WAIT_MS = 100


def raw_name(name: str) -> bytes:
    """A header name's bytes as they were on the wire."""
    return name.encode("utf-8", "surrogateescape")


def readable(name: str) -> bool:
    """Whether a header name is UTF-8, as Kafka clients read and write names."""
    if name.isascii():  # the common case costs one C call
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unreadable_header(headers: Iterable[tuple[str, object]]) -> str | None:
    """Why a record's headers cannot be read as Kafka clients read them, or None."""
    for index, (name, _) in enumerate(headers):
        if not readable(name):
            return f"header #{index} has a name that is not UTF-8: {raw_name(name)!r}"
    return None


class Unparsable(Exception):
    """Bytes from Kafka that are not a record batch this module can read."""


def parse(tp: TopicPartition, data: bytes, start: int) -> Iterator[ConsumerRecord[bytes, bytes]]:
    """The records at or after `start` in a fetch response's record set (magic v2 only:
    older formats carry no headers, and aiokafka reads them), control batches skipped.
    A batch cut short by the fetch size ends the iteration."""
    view = memoryview(data)
    pos = 0
    while pos + _HEADER.size <= len(view):
        (base_offset, length, _, magic, _, attributes, _, base_ts, _, _, _, _, count) = (
            _HEADER.unpack_from(view, pos)
        )
        end = pos + 12 + length
        if end > len(view):
            return
        if magic != _MAGIC_V2:
            raise Unparsable(f"record batch at offset {base_offset} has magic {magic}")
        body = bytes(view[pos + _HEADER.size : end])
        pos = end
        if attributes & _CONTROL:
            continue
        codec = attributes & _COMPRESSION
        if codec:
            if codec not in _DECOMPRESS:
                raise Unparsable(f"record batch at offset {base_offset} has codec {codec}")
            body = _DECOMPRESS[codec](body)
        timestamp_type = 1 if attributes & _TIMESTAMP_TYPE else 0
        yield from _records(tp, body, count, base_offset, base_ts, timestamp_type, start)


def _records(
    tp: TopicPartition,
    body: bytes,
    count: int,
    base_offset: int,
    base_ts: int,
    timestamp_type: int,
    start: int,
) -> Iterator[ConsumerRecord[bytes, bytes]]:
    buffer = bytearray(body)
    pos = 0
    for _ in range(count):
        length, pos = decode_varint(buffer, pos)
        end = pos + length
        pos += 1  # record attributes: unused
        ts_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _bytes(buffer, pos)
        value, pos = _bytes(buffer, pos)
        header_count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            name, pos = _bytes(buffer, pos)
            header_value, pos = _bytes(buffer, pos)
            headers.append(((name or b"").decode("utf-8", "surrogateescape"), header_value))
        if pos != end:
            raise Unparsable(f"record at offset {base_offset + offset_delta} is malformed")
        offset = base_offset + offset_delta
        if offset >= start:
            yield ConsumerRecord(
                tp.topic,
                tp.partition,
                offset,
                base_ts + ts_delta,
                timestamp_type,
                key,
                value,
                None,
                len(key) if key is not None else -1,
                len(value) if value is not None else -1,
                tuple(headers),
            )


def _bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos : pos + length]), pos + length


async def fetch(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records the partition's leader returns for one fetch at `offset`, parsed here."""
    client = consumer._client  # aiokafka has no public call for one raw fetch
    node = client.cluster.leader_for_partition(tp)
    if node is None or node < 0:
        raise kafka_errors.LeaderNotAvailableError(f"no leader known for {tp}")
    request = FetchRequest(
        FETCH_WAIT_MS, 1, FETCH_BYTES, 0, [(tp.topic, [(tp.partition, offset, FETCH_BYTES)])]
    )
    response = await client.send(node, request)
    for topic, partitions in response.topics:
        for partition, error_code, _, *data in partitions:
            if (topic, partition) != (tp.topic, tp.partition):
                continue
            error = kafka_errors.for_code(error_code)
            if error is not kafka_errors.NoError:
                raise error(f"fetching {tp.topic}[{tp.partition}] at {offset}")
            return list(parse(tp, bytes(data[-1] or b""), offset))
    return []


async def salvage(
    consumer: AIOKafkaConsumer, positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """For each partition whose next records (from `positions`) hold one that aiokafka
    cannot parse: its records through the first such one, read here; the partition is
    sought past it. Partitions whose next records parse are left as they are."""
    found: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    for tp, position in sorted(positions.items()):
        try:
            records = await fetch(consumer, tp, position)
        except (kafka_errors.KafkaError, Unparsable, ValueError, IndexError) as error:
            log.warning(
                "%s[%d]: cannot read its records at %d here either: %s",
                tp.topic,
                tp.partition,
                position,
                error,
            )
            continue
        for index, record in enumerate(records):
            reason = unreadable_header(record.headers)
            if reason is not None:
                log.warning(
                    "%s[%d]@%d: Kafka clients cannot parse this record (%s); it is read "
                    "byte for byte and dead-lettered alone",
                    tp.topic,
                    tp.partition,
                    record.offset,
                    reason,
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": record.offset},
                )
                found[tp] = records[: index + 1]
                consumer.seek(tp, record.offset + 1)
                break
    return found
