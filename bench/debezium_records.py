"""Debezium change records as the Postgres connector writes them with the JsonConverter's
schemas on: `{schema, payload: {before, after, source, op, ts_ms...}}`, for a table of
eight columns (a Connect Decimal and a MicroTimestamp among them), keyed by its id.

Modelled on tests/fixtures/debezium/create_schemas.json (a real connector's record); the
benchmark's Debezium arm reads them through the worker's debezium format.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

TABLE = "orders"
EPOCH_US = 1_795_784_133_779_295  # source.ts_us of the recorded fixture
NOTE = "n" * 100  # with the other columns, a row about the envelope arms' payload size
STATUSES = ("new", "paid", "shipped", "returned")
_CONNECT = "org.apache.kafka.connect.data."


def _column(kind: str, field: str, optional: bool = True, **more: Any) -> dict[str, Any]:
    return {"type": kind, "optional": optional, **more, "field": field}


COLUMNS = [
    _column("int64", "id", optional=False),
    _column("string", "customer"),
    _column(
        "bytes",
        "amount",
        name=f"{_CONNECT}Decimal",
        version=1,
        parameters={"scale": "2", "connect.decimal.precision": "12"},
    ),
    _column("int32", "quantity"),
    _column(
        "string",
        "status",
        name="io.debezium.data.Enum",
        version=1,
        parameters={"allowed": ",".join(STATUSES)},
    ),
    _column("int64", "created_at", name="io.debezium.time.MicroTimestamp", version=1),
    _column("boolean", "active"),
    _column("string", "note"),
]
_ROW = {"type": "struct", "fields": COLUMNS, "optional": True, "name": "dbz.public.orders.Value"}
_SOURCE = {
    "type": "struct",
    "fields": [
        _column("string", "version", optional=False),
        _column("string", "connector", optional=False),
        _column("string", "name", optional=False),
        _column("int64", "ts_ms", optional=False),
        _column(
            "string",
            "snapshot",
            name="io.debezium.data.Enum",
            version=1,
            parameters={"allowed": "true,first,last,false,incremental"},
            default="false",
        ),
        _column("string", "db", optional=False),
        _column("string", "sequence"),
        _column("int64", "ts_us"),
        _column("int64", "ts_ns"),
        _column("string", "schema", optional=False),
        _column("string", "table", optional=False),
        _column("int64", "txId"),
        _column("int64", "lsn"),
        _column("int64", "xmin"),
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
    "version": 1,
    "field": "source",
}
SCHEMA = {
    "type": "struct",
    "fields": [
        _ROW | {"field": "before"},
        _ROW | {"field": "after"},
        _SOURCE,
        _column("string", "op", optional=False),
        _column("int64", "ts_ms"),
        _column("int64", "ts_us"),
    ],
    "optional": False,
    "name": "dbz.public.orders.Envelope",
    "version": 2,
}
KEY_SCHEMA = {
    "type": "struct",
    "fields": [COLUMNS[0]],
    "optional": False,
    "name": "dbz.public.orders.Key",
}
_VALUE_HEAD = '{"schema":' + json.dumps(SCHEMA, separators=(",", ":")) + ',"payload":'
_KEY_HEAD = '{"schema":' + json.dumps(KEY_SCHEMA, separators=(",", ":")) + ',"payload":'


def decimal_bytes(unscaled: int) -> str:
    """A Connect Decimal's value: big-endian two's complement, base64."""
    raw = unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)
    return base64.b64encode(raw).decode()


def change(i: int, keys: int) -> dict[str, Any]:
    """The i-th change: a create for a key's first row, an update after, at LSN order."""
    row_id = i % keys
    at_us = EPOCH_US + i * 1000
    lsn = 13_662_272_560 + i * 64
    row = {
        "id": row_id,
        "customer": f"customer-{i % 997}",
        "amount": decimal_bytes((i * 7919) % 10_000_000 - 500),
        "quantity": i % 50,
        "status": STATUSES[i % 4],
        "created_at": at_us - 3_600_000_000,
        "active": i % 3 != 0,
        "note": NOTE,
    }
    source = {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "dbz",
        "ts_ms": at_us // 1000,
        "snapshot": "false",
        "db": "shop",
        "sequence": f'[null,"{lsn}"]',
        "ts_us": at_us,
        "ts_ns": at_us * 1000,
        "schema": "public",
        "table": TABLE,
        "txId": 72_143 + i,
        "lsn": lsn,
        "xmin": None,
    }
    op = "c" if i < keys else "u"
    return {"before": None, "after": row, "source": source, "op": op, "ts_ms": at_us // 1000}


def records(n: int, keys: int) -> Iterator[tuple[bytes, bytes]]:
    """`n` Kafka (key, value) pairs of changes to `keys` rows, schemas on."""
    for i in range(n):
        key = _KEY_HEAD + '{"id":' + str(i % keys) + "}}"
        value = _VALUE_HEAD + json.dumps(change(i, keys), separators=(",", ":")) + "}"
        yield key.encode(), value.encode()
