"""Debezium change events (Kafka Connect's JsonConverter, schemas on or off) as events.

A change record maps to an Event:

- type: `<entity>_created`, `_updated`, `_deleted` or `_snapshot` (op c, u, d, r);
- entity: `source.table`, or the topic's configured entity;
- key: the record key's columns; one column as its text (as the scanners render a key
  column), several as a compact JSON object in the key's column order;
- version: `source.lsn` where the connector has one (Postgres); None elsewhere, and the
  projection then orders a row's changes by occurred_at;
- occurred_at: `source.ts_us` (Debezium 2.6 on), else `source.ts_ms`;
- payload: `after`, or `before` for a delete (`{}` when the connector sends none);
  with schemas on, each column decoded by its Connect schema (`connect_types`), as the
  key's columns are;
- id: a UUID derived from (connector, db, table, position, op, key), so a re-delivered
  change has the id it had; the position is the LSN, else the rest of `source`.

A tombstone (the null value Debezium writes after a delete, for log compaction) maps to
None: acknowledged and checkpointed, no event.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from pydantic_core import to_json

from cronstream.events import connect_types, envelope, exact, formats
from cronstream.events.envelope import EnvelopeError, Event, Headers
from cronstream.runtime.names import ENTITY_NAME
from cronstream.runtime.untrusted import json_type_name, shown

DEBEZIUM_NAMESPACE = uuid.UUID("0b9c6c1e-3f1e-5b8a-9d0e-646562657a69")
_NAMESPACE_BYTES = DEBEZIUM_NAMESPACE.bytes
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OP_TYPES = {"c": "created", "u": "updated", "d": "deleted", "r": "snapshot"}
_NOT_MAPPED = {"t": "truncate", "m": "message"}


def _uuid5(name: str) -> str:
    """`str(uuid.uuid5(DEBEZIUM_NAMESPACE, name))` without building a UUID object (a
    sizeable part of a record's time)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _unwrapped(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The payload of a `{"schema": ..., "payload": ...}` wrapper (schemas enabled) and
    its schema; `data` itself and None when schemas are off."""
    if data.keys() == {"schema", "payload"} and isinstance(data["schema"], dict):
        payload = data["payload"]
        if not isinstance(payload, dict):
            raise EnvelopeError("payload", f"is JSON {json_type_name(payload)}, not an object")
        return payload, data["schema"]
    return data, None


class _Wrapped(msgspec.Struct, forbid_unknown_fields=True):
    """A record with schemas on, its two parts left as JSON text."""

    schema: msgspec.Raw
    payload: msgspec.Raw


_WRAPPED = msgspec.json.Decoder(_Wrapped)
# Parsed schemas by their text: a topic's records share a few, and parsing the schema was
# most of a record's decoding time. Cleared when full (a schema per record would fill it).
_SCHEMAS: dict[bytes, dict[str, Any]] = {}
_MOST_SCHEMAS = 256


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)  # the general path says why
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(name)


# envelope.strict_loads's rules, its decoder made once (json.loads makes one per call).
_STRICT = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _loads(text: bytes) -> Any:
    """`envelope.strict_loads(text)` for UTF-8 text; a ValueError for what it refuses."""
    return _STRICT.decode(text.decode())


def _storable(value: bytes) -> bool:
    """Whether `value` cannot hold a string `envelope.json_object` refuses: no escaped NUL
    or surrogate, no raw surrogate (UTF-8 ED A0-BF, which json.loads lets through)."""
    return b"\xed" not in value and not (
        b"\\u" in value and (b"\\u0000" in value or b"\\ud" in value or b"\\uD" in value)
    )


def _shallow(text: bytes, depth: int) -> bool:
    """Whether JSON `text` at nesting `depth` cannot nest past MAX_DEPTH: it has fewer
    brackets than the levels left."""
    return text.count(b"{") + text.count(b"[") <= envelope.MAX_DEPTH - depth + 1


def _schema(text: bytes) -> dict[str, Any] | None:
    """A wrapper's schema (nesting 2), parsed once per distinct text; None if not an
    object or possibly too deep, for the general path to tell."""
    schema = _SCHEMAS.get(text)
    if schema is None:
        parsed = _loads(text) if _shallow(text, 2) else None
        if not isinstance(parsed, dict):
            return None
        if len(_SCHEMAS) >= _MOST_SCHEMAS:
            _SCHEMAS.clear()
        schema = _SCHEMAS[text] = parsed
    return schema


def _record(value: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`_unwrapped(envelope.json_object(value))`, the same result or EnvelopeError, in a
    fraction of the time for a plain value: its schema parsed once per distinct schema.
    Any doubt (not storable text, not a wrapper, not JSON, deep) takes the general path."""
    if _storable(value):
        try:
            wrapped = _WRAPPED.decode(value)
        except msgspec.DecodeError:  # not a wrapper (schemas off), or not JSON
            wrapped = None
        if wrapped is not None:
            payload_text = bytes(wrapped.payload)
            try:
                schema = _schema(bytes(wrapped.schema))
                payload = _loads(payload_text) if _shallow(payload_text, 2) else None
            except (ValueError, RecursionError):
                schema = payload = None
            if schema is not None and isinstance(payload, dict):
                return payload, schema
        elif _shallow(value, 1):
            try:
                data = _loads(value)
            except (ValueError, RecursionError):
                data = None
            if isinstance(data, dict):
                return _unwrapped(data)
    return _unwrapped(envelope.json_object(value))


_KINDS = {int: "an integer", str: "a string", dict: "an object"}


def _field(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        found = "missing" if value is None else f"JSON {json_type_name(value)}"
        raise EnvelopeError(where, f"must be {_KINDS[kind]}, found {found}")
    return value


def _occurred_at(source: dict[str, Any]) -> datetime:
    """`source.ts_us` where the connector sends it (Debezium 2.6 on), else `ts_ms`: the
    finer the time, the fewer ties among changes that have no version."""
    ts_us = source.get("ts_us")
    if isinstance(ts_us, int) and not isinstance(ts_us, bool):
        name, microseconds = "source.ts_us", ts_us
    else:
        name = "source.ts_ms"
        microseconds = _field(source, "ts_ms", int, name) * 1000
    try:
        return EPOCH + timedelta(microseconds=microseconds)
    except OverflowError:
        raise EnvelopeError(name, "is out of range") from None


def key_text(columns: dict[str, Any]) -> str:
    """A row key as text: one column as Postgres renders it with ::text, several as JSON."""
    if len(columns) != 1:
        return exact.dumps(columns)
    [value] = columns.values()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return exact.plain(value)
    if isinstance(value, str | int | float):
        return str(value)
    return exact.dumps(value)


def _key(key: bytes | None) -> str:
    if key is None:
        raise EnvelopeError("<key>", "is empty (Debezium sends none for a table without a key)")
    try:
        columns, schema = _record(key)
    except EnvelopeError as error:
        raise EnvelopeError("<key>", error.reason) from None
    columns = connect_types.decode(columns, schema, "<key>", 2)
    if not columns or any(value is None for value in columns.values()):
        raise EnvelopeError("<key>", "has no column value")
    return key_text(columns)


class Adapter:
    """Maps one Debezium record to an Event; `entity` overrides `source.table`."""

    def __init__(self, entity: str | None = None) -> None:
        self.entity = entity

    def __call__(self, value: bytes | None, key: bytes | None, headers: Headers) -> Event | None:
        if value is None:
            return None  # a tombstone
        change, schema = _record(value)
        op = change.get("op")
        if not isinstance(op, str | None):
            raise EnvelopeError("op", f"must be a string, found JSON {json_type_name(op)}")
        if op in _NOT_MAPPED:
            raise EnvelopeError("op", f"'{op}' ({_NOT_MAPPED[op]}) events are not mapped")
        if op not in OP_TYPES:
            found = "missing" if op is None else shown(repr(op))
            raise EnvelopeError("op", f"must be one of c, u, d, r, found {found}")
        source = _field(change, "source", dict, "source")
        table = _field(source, "table", str, "source.table")
        entity = self.entity or table
        if not ENTITY_NAME.fullmatch(entity):
            raise EnvelopeError(
                "source.table",
                f"'{shown(table)}' is not an entity name (1-180 of A-Z a-z 0-9 . _ -): "
                "name one in CRONSTREAM_EXTERNAL_TOPICS as topic:debezium:<entity>",
            )
        row_field = "before" if op == "d" else "after"
        row = change.get(row_field)
        if row is None and op != "d":
            raise EnvelopeError(row_field, f"is missing in an '{op}' change")
        if row is not None and not isinstance(row, dict):
            raise EnvelopeError(row_field, f"is JSON {json_type_name(row)}, not an object")
        row_schema = connect_types.field_schema(schema, row_field)
        row = connect_types.decode(row, row_schema, row_field, 2)
        occurred_at = _occurred_at(source)
        version: int | None = None
        if source.get("lsn") is not None:
            version = _field(source, "lsn", int, "source.lsn")
            if not 0 <= version <= envelope.BIGINT_MAX:
                raise EnvelopeError("source.lsn", f"{version} is out of range")
            position = str(version)
        else:
            position = to_json(
                {name: item for name, item in source.items() if not name.startswith("ts_")}
            ).decode()
        row_key = _key(key)
        connector = str(source.get("connector", ""))
        where = [connector, str(source.get("db", "")), str(source.get("schema", "")), table]
        change_id = "\x1f".join([*where, position, op, row_key])
        return envelope.from_fields(
            {
                "id": _uuid5(change_id),
                "type": f"{entity}_{OP_TYPES[op]}",
                "source": f"debezium/{connector}/{source.get('name', '')}"[:200],
                "entity": entity,
                "key": row_key,
                "version": version,
                "occurred_at": occurred_at,
                "payload": row or {},
                "trace_id": envelope.header_trace_id(headers),
            }
        )


formats.register("debezium", "Debezium record", Adapter)
