from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cronstream.events.envelope import (
    EnvelopeError,
    Event,
    decode,
    encoded,
    from_fields,
    sync_event_id,
)


def valid() -> dict[str, object]:
    return {
        "id": "e-1",
        "type": "sync_required",
        "source": "scanner",
        "entity": "customer",
        "key": "42",
        "version": 7,
        "occurred_at": "2027-03-28T01:30:00+01:00",
        "payload": {"name": "Ada"},
        "trace_id": "t-1",
    }


def test_round_trip_normalises_time_to_utc() -> None:
    event = decode(json.dumps(valid()).encode())
    assert event.occurred_at == datetime(2027, 3, 28, 0, 30, tzinfo=UTC)
    encoded = json.loads(event.encode())
    assert encoded["occurred_at"] == "2027-03-28T00:30:00Z"
    assert decode(event.encode()) == event


def test_kafka_key_and_headers() -> None:
    event = decode(json.dumps(valid()).encode())
    assert event.kafka_key == b"customer:42"
    assert event.kafka_headers == [("event_type", b"sync_required"), ("trace_id", b"t-1")]


@pytest.mark.parametrize(
    "field", ["id", "type", "source", "entity", "key", "occurred_at", "payload"]
)
def test_missing_required_field_is_named(field: str) -> None:
    data = valid()
    del data[field]
    with pytest.raises(EnvelopeError) as raised:
        decode(json.dumps(data).encode())
    assert raised.value.field == field
    assert f"field '{field}'" in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "2027-03-28T01:30:00"),  # no offset
        ("occurred_at", "yesterday"),
        ("entity", "has:colon"),
        ("type", ""),
        ("payload", [1, 2]),
        ("version", -1),
        ("version", "5"),  # versions are strict integers: no guessing what was meant
        ("version", True),
        ("version", 5.0),
        ("version", 2**63),  # over Postgres bigint
        ("occurred_at", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
        ("occurred_at", "9999-12-31T23:59:59-14:00"),
        ("occurred_at", 1_800_000_000),  # Unix time is not RFC 3339
        ("key", None),
    ],
)
def test_bad_field_value_is_named(field: str, value: object) -> None:
    data = valid() | {field: value}
    with pytest.raises(EnvelopeError) as raised:
        decode(json.dumps(data).encode())
    assert raised.value.field == field


def test_unknown_field_is_refused() -> None:
    with pytest.raises(EnvelopeError) as raised:
        decode(json.dumps(valid() | {"paylod": {}}).encode())
    assert raised.value.field == "paylod"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not"),
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is JSON array, not an object"),
        (None, "tombstone"),
    ],
)
def test_garbage_value_is_one_typed_error(value: bytes | None, reason: str) -> None:
    with pytest.raises(EnvelopeError) as raised:
        decode(value)
    assert raised.value.field == "<value>"
    assert reason in str(raised.value)


def test_integer_keys_become_text() -> None:
    assert decode(json.dumps(valid() | {"key": 42}).encode()).key == "42"


def test_new_fills_id_time_and_trace() -> None:
    before = datetime.now(UTC)
    event = Event.new(type="sync_required", source="s", entity="e", key=1, payload={})
    assert event.id and event.trace_id
    assert before - timedelta(seconds=1) <= event.occurred_at <= datetime.now(UTC)
    other = Event.new(type="sync_required", source="s", entity="e", key=1, payload={})
    assert other.id != event.id


def test_from_fields_keeps_given_values() -> None:
    when = datetime(2027, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    event = from_fields(valid() | {"occurred_at": when})
    assert (event.id, event.trace_id) == ("e-1", "t-1")
    assert event.occurred_at == when


def test_sync_event_id_is_deterministic_per_row_version() -> None:
    assert sync_event_id("customer", "42", 7) == sync_event_id("customer", "42", 7)
    assert sync_event_id("customer", "42", 7) != sync_event_id("customer", "42", 8)
    assert sync_event_id("customer", "4", "27") != sync_event_id("customer", "42", "7")


def with_payload(payload_json: str) -> bytes:
    text = json.dumps(valid() | {"payload": {}})
    return text.replace('"payload": {}', f'"payload": {payload_json}').encode()


@pytest.mark.parametrize(
    ("payload_json", "reason"),
    [
        ('{"a\\u0000b": 1}', "contains \\u0000"),
        ('{"a": ["\\u0000"]}', "contains \\u0000"),
        ('{"a": "\\udc00"}', "lone surrogate"),
        ('{"a": "\\uD800x"}', "lone surrogate"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": Infinity}', "Infinity is not a JSON number"),
        ('{"a": -1e999}', "out of range"),
        ('{"a": ' + "1" * 4400 + "}", "is not storable JSON"),
        # Past what pydantic can serialize (~255 levels), on the fast and careful paths.
        ('{"a": ' + "[" * 256 + "]" * 256 + "}", "nested more than 200 levels deep"),
        ('{"\u00e9": ' + "[" * 256 + "]" * 256 + "}", "nested more than 200 levels deep"),
    ],
)
def test_values_postgres_would_refuse_are_refused_at_decode(payload_json: str, reason: str) -> None:
    with pytest.raises(EnvelopeError, match="the value") as caught:
        decode(with_payload(payload_json))
    assert reason in str(caught.value)


def test_escapes_postgres_accepts_still_decode() -> None:
    event = decode(with_payload('{"emoji": "\\ud83d\\ude00", "path": "C:\\\\u0000", "n": 1e300}'))
    assert event.payload == {"emoji": "\U0001f600", "path": "C:\\u0000", "n": 1e300}


@pytest.mark.parametrize(
    "payload",
    [
        {"x": float("nan")},
        {"x": [float("inf")]},
        {"x": "\x00"},
        {"x": "\udc80"},
        {"x": json.loads("[" * 300 + "]" * 300)},  # pydantic would fail to serialize it
    ],
)
def test_encoded_refuses_what_a_worker_would_refuse(payload: dict[str, object]) -> None:
    event = Event.new(type="t", source="s", entity="e", key=1, payload=payload)
    with pytest.raises(EnvelopeError):
        encoded(event)


def test_the_deepest_value_a_worker_takes_re_encodes() -> None:
    deepest = with_payload('{"a": ' + "[" * 198 + "]" * 198 + "}")  # 200 levels in all
    assert decode(decode(deepest).encode()) == decode(deepest)


def test_encoded_is_what_a_worker_decodes() -> None:
    event = Event.new(type="t", source="s", entity="e", key=1, payload={"n": 1e300}, version=3)
    assert decode(encoded(event)) == event
