"""Kafka Connect values decoded by their schema: each Debezium semantic type, NULLs,
arrays, and values their schema does not describe (refused naming field and schema)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from cronstream.events import exact
from cronstream.events.connect_types import decode
from cronstream.events.debezium import Adapter, key_text
from cronstream.events.envelope import EnvelopeError

DECIMAL = "org.apache.kafka.connect.data.Decimal"


def unscaled(number: int) -> str:
    """Connect's Decimal bytes: big-endian two's complement, base64."""
    size = (number + (number < 0)).bit_length() // 8 + 1
    return base64.b64encode(number.to_bytes(size, "big", signed=True)).decode()


def schema(name: str | None, kind: str = "int64", **parameters: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "optional": True}
    if name:
        found["name"] = name
    if parameters:
        found["parameters"] = {k: str(v) for k, v in parameters.items()}
    return found


def decoded(value: Any, column: dict[str, Any]) -> Any:
    return decode(value, column, "after.c", 3)


def text(value: Any, column: dict[str, Any]) -> str:
    return exact.dumps(decoded(value, column))


@pytest.mark.parametrize(
    ("number", "scale", "digits"),
    [
        (12345, 2, "123.45"),
        (-1, 2, "-0.01"),
        (-250, 2, "-2.50"),
        (0, 2, "0.00"),
        (
            -1234567890123456789012345678901234567890,
            20,
            "-12345678901234567890.12345678901234567890",
        ),
        (1, 20, "0.00000000000000000001"),
        (123, -2, "12300"),
    ],
)
def test_a_decimal_is_its_exact_digits(number: int, scale: int, digits: str) -> None:
    value = decoded(unscaled(number), schema(DECIMAL, "bytes", scale=scale))
    assert value == Decimal(digits) and exact.plain(value) == digits
    assert json.loads(exact.dumps({"n": value}), parse_float=Decimal) == {"n": Decimal(digits)}


def test_a_variable_scale_decimal_carries_its_scale() -> None:
    column = schema("io.debezium.data.VariableScaleDecimal", "struct")
    pi = 314159265358979323846264338327950288
    value = decoded({"scale": 35, "value": unscaled(pi)}, column)
    assert exact.dumps(value) == "3.14159265358979323846264338327950288"


def test_numeric_nan_and_infinity_are_strings_as_to_jsonb_writes_them() -> None:
    assert exact.dumps([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")]) == (
        '["NaN","Infinity","-Infinity"]'
    )


def test_json_is_the_value_itself_with_its_numbers_exact() -> None:
    column = schema("io.debezium.data.Json", "string")
    document = '{"n": 420, "x": 1.50, "big": 1e400, "s": "é", "a": [null, true]}'
    assert text(document, column) == '{"n":420,"x":1.50,"big":1E+400,"s":"é","a":[null,true]}'
    assert decoded("null", column) is None
    # Postgres's numeric limits, each side: 131072 digits before the point, 16383 after.
    assert decoded("[1e131071, 1e-16383]", column) == [Decimal("1e131071"), Decimal("1e-16383")]
    assert decoded('"s"', column) == "s"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('{"s": "nul\\u0000"}', "\\u0000"),
        ('"\\ud800"', "surrogate"),
        ('{"x": NaN}', "NaN is not a JSON number"),
        ("1e131072", "out of Postgres numeric's range"),
        ("1e-16384", "out of Postgres numeric's range"),
        ("[" * 300 + "]" * 300, "nested more than"),
        ("{", "Expecting property name"),
    ],
)
def test_json_postgres_would_refuse_is_refused(document: str, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=r"not a Json \(io\.debezium\.data\.Json\)") as raised:
        decoded(document, schema("io.debezium.data.Json", "string"))
    assert raised.value.field == "after.c" and reason in raised.value.reason


TIMES = [
    # (semantic type, schema type, value, as to_jsonb renders the column in UTC)
    ("io.debezium.time.Date", "int32", 19782, "2024-02-29"),
    ("io.debezium.time.Date", "int32", -719162, "0001-01-01"),
    ("io.debezium.time.Date", "int32", -719528, "0001-01-01 BC"),
    ("io.debezium.time.Date", "int32", 2932897, "10000-01-01"),
    ("io.debezium.time.Date", "int32", -622191234, "infinity"),
    ("io.debezium.time.Date", "int32", -625821272, "-infinity"),
    ("org.apache.kafka.connect.data.Date", "int32", 0, "1970-01-01"),
    ("io.debezium.time.Time", "int32", 45296789, "12:34:56.789"),
    ("org.apache.kafka.connect.data.Time", "int32", 0, "00:00:00"),
    ("io.debezium.time.MicroTime", "int64", 45296789012, "12:34:56.789012"),
    ("io.debezium.time.MicroTime", "int64", 86400000000, "24:00:00"),
    ("io.debezium.time.NanoTime", "int64", 45296000000001, "12:34:56.000000001"),
    ("io.debezium.time.Timestamp", "int64", 1709210096789, "2024-02-29T12:34:56.789"),
    ("org.apache.kafka.connect.data.Timestamp", "int64", -1, "1969-12-31T23:59:59.999"),
    ("io.debezium.time.MicroTimestamp", "int64", 1709210096789012, "2024-02-29T12:34:56.789012"),
    ("io.debezium.time.MicroTimestamp", "int64", -63517780800000000, "0044-03-15T12:00:00 BC"),
    ("io.debezium.time.MicroTimestamp", "int64", 9223372036825200000, "infinity"),
    ("io.debezium.time.MicroTimestamp", "int64", -9223372036832400000, "-infinity"),
    ("io.debezium.time.Timestamp", "int64", 9223372036825200, "infinity"),
    ("io.debezium.time.Timestamp", "int64", -9223372036832400, "-infinity"),
    ("io.debezium.time.NanoTimestamp", "int64", 1500000000, "1970-01-01T00:00:01.5"),
    (
        "io.debezium.time.ZonedTimestamp",
        "string",
        "2024-02-29T11:34:56.789012Z",
        "2024-02-29T11:34:56.789012+00:00",
    ),
    (
        "io.debezium.time.ZonedTimestamp",
        "string",
        "2024-03-01T00:30:00+01:00",
        "2024-02-29T23:30:00+00:00",
    ),
    (
        "io.debezium.time.ZonedTimestamp",
        "string",
        "+294276-12-31T23:59:59.000000Z",
        "294276-12-31T23:59:59+00:00",
    ),
    (
        "io.debezium.time.ZonedTimestamp",
        "string",
        "-0043-03-15T12:00:00Z",
        "0044-03-15T12:00:00+00:00 BC",
    ),
    ("io.debezium.time.ZonedTimestamp", "string", "infinity", "infinity"),
    ("io.debezium.time.ZonedTimestamp", "string", "-infinity", "-infinity"),
    ("io.debezium.time.ZonedTime", "string", "10:34:56.5Z", "10:34:56.5+00"),
    ("io.debezium.time.ZonedTime", "string", "00:30:00+01:00", "23:30:00+00"),
    ("io.debezium.time.MicroDuration", "int64", 37091106780000, "PT37091106.78S"),
    ("io.debezium.time.MicroDuration", "int64", -79020000000, "PT-79020S"),
    ("io.debezium.time.Interval", "string", "P1Y2M3DT4H5M6.78S", "P1Y2M3DT4H5M6.78S"),
    ("io.debezium.time.Interval", "string", "P0Y0M-1DT2H3M0S", "P0Y0M-1DT2H3M0S"),
]


@pytest.mark.parametrize(("name", "kind", "value", "rendered"), TIMES)
def test_times_render_as_postgres_renders_them(
    name: str, kind: str, value: Any, rendered: str
) -> None:
    assert decoded(value, schema(name, kind)) == rendered


@pytest.mark.parametrize(
    ("name", "kind", "value", "reason"),
    [
        ("io.debezium.time.Date", "int32", "2024-02-29", "found JSON string"),
        ("io.debezium.time.Date", "int32", 2**31, "out of range"),
        ("io.debezium.time.Time", "int32", 86400001, "not within a day"),
        ("io.debezium.time.MicroTime", "int64", -1, "not within a day"),
        ("io.debezium.time.MicroTimestamp", "int64", 1.5, "found JSON number"),
        ("io.debezium.time.MicroTimestamp", "int64", 2**63, "out of range"),
        ("io.debezium.time.ZonedTimestamp", "string", "2024-02-30T00:00:00Z", "not a date"),
        ("io.debezium.time.ZonedTimestamp", "string", "2024-02-29 00:00:00", "ISO 8601"),
        ("io.debezium.time.ZonedTimestamp", "string", "2024-02-29T25:00:00Z", "time of day"),
        ("io.debezium.time.ZonedTime", "string", "10:34:56", "ISO 8601"),
        ("io.debezium.time.Interval", "string", "1 day", "ISO 8601 duration"),
    ],
)
def test_a_time_its_schema_does_not_describe_is_refused(
    name: str, kind: str, value: Any, reason: str
) -> None:
    with pytest.raises(EnvelopeError) as raised:
        decoded(value, schema(name, kind))
    label = name.rpartition(".")[2]
    assert raised.value.field == "after.c"
    assert raised.value.reason.startswith(f"not a {label} ({name}): ")
    assert reason in raised.value.reason


def test_bits_are_the_bit_string_of_their_length() -> None:
    bits = schema("io.debezium.data.Bits", "bytes", length=10)
    assert decoded("gQI=", bits) == "1010000001"  # little-endian, as Debezium writes them
    assert decoded("", bits) == "0000000000"  # Debezium drops zero bytes
    assert decoded("BQ==", schema("io.debezium.data.Bits", "bytes", length=2**31 - 1)) == "101"
    with pytest.raises(EnvelopeError, match="more than its 10 bits"):
        decoded("//8=", bits)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("io.debezium.data.Uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None),
        ("io.debezium.data.Enum", "happy", None),
        ("io.debezium.data.Xml", "<a>b</a>", None),
        ("io.debezium.data.Ltree", "a.b.c", None),
        ("io.debezium.data.Tsvector", "'a' 'cat'", None),
        ("io.debezium.data.EnumSet", "a,b", ["a", "b"]),
        ("io.debezium.data.EnumSet", "", []),
    ],
)
def test_text_types_are_their_text(name: str, value: str, expected: Any) -> None:
    assert decoded(value, schema(name, "string")) == (value if expected is None else expected)
    with pytest.raises(EnvelopeError, match=f"\\({name}\\): found JSON number"):
        decoded(7, schema(name, "string"))


GEOMETRY = {
    "type": "struct",
    "name": "io.debezium.data.geometry.Geometry",
    "fields": [
        {"type": "bytes", "optional": False, "field": "wkb"},
        {"type": "int32", "optional": True, "field": "srid"},
    ],
}


def test_geometry_is_its_wkb_and_srid() -> None:
    value = {"wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAALA", "srid": 4326}
    assert decoded(value, GEOMETRY) == value
    with pytest.raises(EnvelopeError) as raised:
        decoded({"wkb": "***", "srid": 4326}, GEOMETRY)
    assert raised.value.field == "after.c.wkb" and "not base64" in raised.value.reason
    with pytest.raises(EnvelopeError, match=r"not a struct \(io\.debezium\.data\.geometry"):
        decoded("POINT(1 2)", GEOMETRY)


@pytest.mark.parametrize(
    ("kind", "value", "kept"),
    [
        ("int16", -32768, True),
        ("int16", 32768, False),
        ("int64", 2**63 - 1, True),
        ("int32", True, False),
        ("double", 1e300, True),
        ("double", "NaN", True),
        ("float", "-Infinity", True),
        ("double", "1.5", False),
        ("boolean", 1, False),
        ("string", None, True),
        ("bytes", "AP8Q", True),
        ("bytes", "AP8", False),
    ],
)
def test_plain_schema_types_are_checked_and_kept(kind: str, value: Any, kept: bool) -> None:
    if kept:
        assert decoded(value, schema(None, kind)) == value
    else:
        with pytest.raises(EnvelopeError, match=f"^field 'after.c': not an? {kind}: "):
            decoded(value, schema(None, kind))


def test_arrays_decode_each_item_and_name_a_bad_one() -> None:
    column = {"type": "array", "items": schema(DECIMAL, "bytes", scale=2)}
    assert text([unscaled(150), unscaled(-200), None], column) == "[1.50,-2.00,null]"
    with pytest.raises(EnvelopeError) as raised:
        decoded([unscaled(1), "!"], column)
    assert raised.value.field == "after.c[1]"
    assert raised.value.reason.startswith(f"not a Decimal ({DECIMAL}): is not base64")
    with pytest.raises(EnvelopeError, match="not an array: found JSON string"):
        decoded("{1,2}", column)


def test_a_decimal_schema_without_a_scale_is_refused() -> None:
    with pytest.raises(EnvelopeError, match=r"no integer parameters\.scale"):
        decoded(unscaled(1), schema(DECIMAL, "bytes"))


# --- through the adapter: a record as JsonConverter writes it with schemas on ----------

KEY_SCHEMA = {"type": "struct", "fields": [schema(DECIMAL, "bytes", scale=2) | {"field": "id"}]}
ROW_SCHEMA = {
    "type": "struct",
    "fields": [
        schema(DECIMAL, "bytes", scale=2) | {"field": "id"},
        schema(DECIMAL, "bytes", scale=2) | {"field": "amount"},
        schema("io.debezium.data.Json", "string") | {"field": "doc"},
        schema("io.debezium.time.MicroTimestamp", "int64") | {"field": "at"},
        schema(None, "string") | {"field": "name"},
    ],
}


def record(after: dict[str, Any], key: int = 500) -> tuple[bytes, bytes]:
    change = {
        "before": None,
        "after": after,
        "op": "c",
        "source": {"connector": "postgresql", "name": "dbz", "table": "t", "ts_ms": 1, "lsn": 9},
    }
    value_schema = {
        "type": "struct",
        "fields": [ROW_SCHEMA | {"field": "before"}, ROW_SCHEMA | {"field": "after"}],
    }
    value = {"schema": value_schema, "payload": change}
    key_record = {"schema": KEY_SCHEMA, "payload": {"id": unscaled(key)}}
    return json.dumps(value).encode(), json.dumps(key_record).encode()


ROW = {"id": unscaled(500), "amount": unscaled(12345), "doc": '{"n": 1.50}', "at": 0, "name": "a"}


def test_a_record_with_its_schema_reads_as_its_columns() -> None:
    value, key = record(ROW)
    event = Adapter()(value, key, [])
    assert event is not None
    assert event.key == "5.00"  # as the scanners render a numeric(12,2) key: its ::text
    assert exact.dumps(event.payload) == (
        '{"id":5.00,"amount":123.45,"doc":{"n":1.50},"at":"1970-01-01T00:00:00","name":"a"}'
    )
    assert key_text({"id": Decimal("-0.01"), "n": Decimal("1E-20")}) == '{"id":-0.01,"n":1E-20}'


def test_a_null_column_stays_null() -> None:
    value, key = record(dict.fromkeys(ROW) | {"id": unscaled(500)})
    event = Adapter()(value, key, [])
    assert event is not None
    assert event.payload == {
        "id": Decimal("5.00"),
        "amount": None,
        "doc": None,
        "at": None,
        "name": None,
    }


@pytest.mark.parametrize(
    ("after", "key", "field", "reason"),
    [
        (
            ROW | {"amount": 123.45},
            500,
            "after.amount",
            f"not a Decimal ({DECIMAL}): found JSON number",
        ),
        (
            ROW | {"doc": {"n": 1}},
            500,
            "after.doc",
            "not a Json (io.debezium.data.Json): found JSON object, not JSON text",
        ),
        (ROW | {"name": 7}, 500, "after.name", "not a string: found JSON number"),
        (ROW, None, "<key>.id", f"not a Decimal ({DECIMAL}): is out of Postgres numeric's"),
    ],
)
def test_a_column_its_schema_does_not_describe_is_refused(
    after: dict[str, Any], key: int | None, field: str, reason: str
) -> None:
    value, key_record = record(after, key or 500)
    if key is None:  # a scale numeric cannot have
        loaded = json.loads(key_record)
        loaded["schema"]["fields"][0]["parameters"]["scale"] = "20000"
        key_record = json.dumps(loaded).encode()
    with pytest.raises(EnvelopeError) as raised:
        Adapter()(value, key_record, [])
    assert raised.value.field == field
    assert reason in raised.value.reason, raised.value.reason
