"""Kafka Connect values decoded by their schema, as Kafka Connect's JsonConverter sends
them with `schemas.enable=true` (`{"schema": ..., "payload": ...}`), into natural JSON.

By the schema's `name` (its semantic type):

- `org.apache.kafka.connect.data.Decimal` (base64 big-endian two's complement, scale in
  `parameters.scale`) and `io.debezium.data.VariableScaleDecimal` (`{scale, value}`):
  an exact `decimal.Decimal`, written as its digits (`exact`);
- `io.debezium.data.Json`: the JSON value itself, its numbers exact, under the
  envelope's rules (no NUL, no lone surrogate, no NaN, not nested too deeply);
- dates, times and timestamps (`io.debezium.time.*`, Connect's `Date`, `Time`,
  `Timestamp`): text as Postgres's to_jsonb renders the column in UTC (`connect_times`);
  `MicroDuration` as an ISO 8601 duration in seconds, `Interval` as Debezium writes it;
- `io.debezium.data.Bits`: the bit string (`1010000001`), `length` digits;
- `io.debezium.data.EnumSet`: a list of its values;
- text types (`Uuid`, `Enum`, `Xml`, `Ltree`, `Tsvector`, the `Iso*` times): the text.

Schema types without a semantic type are checked and kept: integers in their range,
floats (and Jackson's "NaN", "Infinity", "-Infinity", as to_jsonb writes them), bytes
as base64 text; structs (geometry's `{wkb, srid}`, a point's `{x, y, wkb, srid}`),
arrays and maps field by field. A value its schema does not describe is an
EnvelopeError naming the field and the schema: `field 'after.amount': not a Decimal
(org.apache.kafka.connect.data.Decimal): ...`.
"""

from __future__ import annotations

import binascii
import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cronstream.events import connect_times as times
from cronstream.events import envelope, exact
from cronstream.events.envelope import EnvelopeError

Decoder = Callable[[Any, dict[str, Any], int], Any]  # (value, schema, depth) -> decoded

# Exact arithmetic for a scale shift: the default context would round to 28 digits.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
# Enough bytes for numeric's 147455 digits; longer is refused before any arithmetic.
_MAX_DECIMAL_BYTES = 61_300
_INT_RANGES = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_FLOAT_WORDS = ("NaN", "Infinity", "-Infinity")  # Jackson's, for float and double
_found = times.found


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{_found(value)}, not base64 text")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as error:
        raise ValueError(f"is not base64: {error}") from None


def _parameter(schema: dict[str, Any], name: str) -> int:
    parameters = schema.get("parameters")
    text = parameters.get(name) if isinstance(parameters, dict) else None
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"its schema has no integer parameters.{name}") from None


def _scaled(unscaled: bytes, scale: int) -> Decimal:
    if not unscaled:
        raise ValueError("has no bytes")
    if len(unscaled) > _MAX_DECIMAL_BYTES or abs(scale) > exact.MAX_SCALE:
        raise ValueError("is out of Postgres numeric's range")
    number = Decimal(int.from_bytes(unscaled, "big", signed=True))
    return exact.numeric(number.scaleb(-scale, context=_EXACT))


def _decimal(value: Any, schema: dict[str, Any], depth: int) -> Decimal:
    return _scaled(_base64(value), _parameter(schema, "scale"))


def _variable_decimal(value: Any, schema: dict[str, Any], depth: int) -> Decimal:
    if not isinstance(value, dict):
        raise ValueError(f"{_found(value)}, not an object of scale and value")
    scale = value.get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise ValueError("its scale is not an integer")
    return _scaled(_base64(value.get("value")), scale)


def _json(value: Any, schema: dict[str, Any], depth: int) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{_found(value)}, not JSON text")
    try:
        data = exact.loads(value)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's advice would not help
            raise ValueError("an integer has more than 4300 digits") from None
        raise
    refused = envelope.refused_json(data, depth)
    if refused is not None:
        raise ValueError(refused)
    return data


def _bits(value: Any, schema: dict[str, Any], depth: int) -> str:
    number = int.from_bytes(_base64(value), "little")
    length = _parameter(schema, "length")
    if not 0 < length < 2**31:
        raise ValueError(f"its length {length} is out of range")
    if number.bit_length() > length:
        raise ValueError(f"has more than its {length} bits")
    # Debezium drops leading zero bytes; the declared length restores a bit(n)'s zeros.
    return f"{number:0{min(length, 1 << 20)}b}" if length < 2**31 - 1 else f"{number:b}"


def _text(value: Any, schema: dict[str, Any] | None = None, depth: int = 0) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_found(value)}, not a string")
    return value


def _enum_set(value: Any, schema: dict[str, Any], depth: int) -> list[str]:
    text = _text(value)
    return text.split(",") if text else []


def _with(render: Callable[..., str], *args: Any) -> Decoder:
    return lambda value, schema, depth: render(value, *args)


_DEBEZIUM = "io.debezium."
_CONNECT = "org.apache.kafka.connect.data."
NAMED: dict[str, tuple[str, Decoder]] = {
    f"{_CONNECT}Decimal": ("Decimal", _decimal),
    f"{_DEBEZIUM}data.VariableScaleDecimal": ("VariableScaleDecimal", _variable_decimal),
    f"{_DEBEZIUM}data.Json": ("Json", _json),
    f"{_DEBEZIUM}data.Bits": ("Bits", _bits),
    f"{_DEBEZIUM}data.EnumSet": ("EnumSet", _enum_set),
    f"{_CONNECT}Date": ("Date", _with(times.date_text)),
    f"{_CONNECT}Time": ("Time", _with(times.time_text, times.MILLI)),
    f"{_CONNECT}Timestamp": ("Timestamp", _with(times.timestamp_text, times.MILLI)),
    f"{_DEBEZIUM}time.Date": ("Date", _with(times.date_text)),
    f"{_DEBEZIUM}time.Time": ("Time", _with(times.time_text, times.MILLI)),
    f"{_DEBEZIUM}time.MicroTime": ("MicroTime", _with(times.time_text, times.MICRO)),
    f"{_DEBEZIUM}time.NanoTime": ("NanoTime", _with(times.time_text, times.NANO)),
    f"{_DEBEZIUM}time.Timestamp": ("Timestamp", _with(times.timestamp_text, times.MILLI)),
    f"{_DEBEZIUM}time.MicroTimestamp": (
        "MicroTimestamp",
        _with(times.timestamp_text, times.MICRO),
    ),
    f"{_DEBEZIUM}time.NanoTimestamp": ("NanoTimestamp", _with(times.timestamp_text, times.NANO)),
    f"{_DEBEZIUM}time.ZonedTimestamp": ("ZonedTimestamp", _with(times.zoned_timestamp_text)),
    f"{_DEBEZIUM}time.ZonedTime": ("ZonedTime", _with(times.zoned_time_text)),
    f"{_DEBEZIUM}time.MicroDuration": ("MicroDuration", _with(times.micro_duration_text)),
    f"{_DEBEZIUM}time.Interval": ("Interval", _with(times.interval_text)),
    **{
        f"{_DEBEZIUM}{name}": (name.rpartition(".")[2], _text)
        for name in (
            "data.Uuid",
            "data.Enum",
            "data.Xml",
            "data.Ltree",
            "data.Tsvector",
            "time.IsoDate",
            "time.IsoTime",
            "time.IsoTimestamp",
        )
    },
}


def _an(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _primitive(value: Any, kind: str) -> Any:
    """`value` checked against a schema type without a semantic type."""
    if kind in _INT_RANGES:
        bits = _INT_RANGES[kind]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(_found(value))
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise ValueError(f"{value} is out of range")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(_found(value))
        if isinstance(value, str) and value not in _FLOAT_WORDS:
            raise ValueError(f"found JSON string {value[:20]!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(_found(value))
    elif kind == "string":
        _text(value)
    elif kind == "bytes":
        _base64(value)  # bytes stay base64 text
    return value


# A struct schema's fields, each with the type a value of it has when it needs no more
# than that check (strings, booleans, int64 within range: most columns); by the schema's
# id, the schema kept with them so the id is not reused while cached.
_Plan = list[tuple[str, dict[str, Any], type | None]]
_PLANS: dict[int, tuple[dict[str, Any], _Plan]] = {}
_INT64_MIN = -(1 << 63)
_QUICK: dict[object, type] = {"string": str, "boolean": bool, "int64": int}


def _plan(schema: dict[str, Any]) -> _Plan:
    cached = _PLANS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    plan: _Plan = []
    for spec in schema.get("fields") or []:
        name = spec.get("field") if isinstance(spec, dict) else None
        if isinstance(name, str):
            quick = None if "name" in spec else _QUICK.get(spec.get("type"))
            plan.append((name, spec, quick))
    if len(_PLANS) >= 1024:
        _PLANS.clear()
    _PLANS[id(schema)] = (schema, plan)
    return plan


def _is_plain(item: Any, kind: type) -> bool:
    if kind is int:
        return type(item) is int and _INT64_MIN <= item < -_INT64_MIN
    return type(item) is kind


def _fields(value: Any, schema: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{_found(value)}, not an object")
    decoded = dict(value)  # a field the schema does not list is kept as it is
    for name, spec, quick in _plan(schema):
        if name in value:
            item: Any = value[name]
            if item is None or (quick is not None and _is_plain(item, quick)):
                continue  # kept as it is
            decoded[name] = decode(item, spec, f"{where}.{name}", depth + 1)
    return decoded


def _structured(value: Any, schema: dict[str, Any], where: str, depth: int) -> Any:
    """A struct, array or map, its members decoded by their schemas; else a primitive."""
    kind = schema.get("type")
    if kind == "struct":
        return _fields(value, schema, where, depth)
    if kind == "array":
        if not isinstance(value, list):
            raise ValueError(f"{_found(value)}, not an array")
        items = schema.get("items")
        return [decode(v, items, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if kind == "map":
        values = schema.get("values")
        if isinstance(value, dict):  # string keys: a JSON object
            return {k: decode(v, values, f"{where}.{k}", depth + 1) for k, v in value.items()}
        if not isinstance(value, list):  # other keys: an array of [key, value] pairs
            raise ValueError(f"{_found(value)}, not an object or an array of pairs")
        return value
    return _primitive(value, str(kind))


def decode(value: Any, schema: Any, where: str, depth: int) -> Any:
    """`value` decoded by its Connect `schema`; `where` names it in errors (`after.amount`)
    and `depth` is its nesting in the Kafka value (a payload's column: 3)."""
    if value is None or not isinstance(schema, dict):
        return value
    name = schema.get("name")
    named = NAMED.get(name) if isinstance(name, str) else None
    try:
        if named is not None:
            return named[1](value, schema, depth)
        return _structured(value, schema, where, depth)
    except EnvelopeError:
        raise  # a member's, which names the member
    except ValueError as error:
        if named is not None:
            label = f"{_an(named[0])} ({name})"
        else:
            label = _an(str(schema.get("type")))
            label += f" ({name})" if isinstance(name, str) else ""
        raise EnvelopeError(where, f"not {label}: {error}") from None


def field_schema(schema: Any, name: str) -> dict[str, Any] | None:
    """The schema of struct field `name` in a struct `schema`, if it describes one."""
    fields = schema.get("fields") if isinstance(schema, dict) else None
    for spec in fields if isinstance(fields, list) else []:
        if isinstance(spec, dict) and spec.get("field") == name:
            return spec
    return None
