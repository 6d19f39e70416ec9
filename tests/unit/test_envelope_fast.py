"""The envelope's fast path (msgspec) against its careful path (pydantic over json.loads):
the fast path never takes a value the careful path refuses, takes it as the same event
when it does, and every value decodes (or is refused, for the same reason) as the
careful path alone would."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from cronstream.events import fast_envelope
from cronstream.events.envelope import (
    BIGINT_MAX,
    MAX_DEPTH,
    EnvelopeError,
    Event,
    _decode_carefully,
    decode,
    decode_fast,
)

VALID: dict[str, Any] = {
    "id": "e-1",
    "type": "sync_required",
    "source": "scanner",
    "entity": "customer",
    "key": "42",
    "version": 7,
    "occurred_at": "2027-03-28T01:30:00.123456+01:00",
    "payload": {"name": "Ada", "n": 1, "x": 2.5, "tags": ["a", {"b": None}], "ok": True},
    "trace_id": "t-1",
}

ODD_VALUES: list[Any] = [
    None, "", " ", "a", "x" * 200, "x" * 201, "x" * 1000, "x" * 1001, "a\n", "a b", "a:b",
    "é", "\u00e9x", "٣", 0, -1, 1, 5.0, 0.5, True, False, 2**63 - 1, 2**63, -(2**63), 2**64,
    10**30, [], {}, [1], {"a": 1}, "5", "sync_required\n", "Sync.Required-1_x", "a\x00",
    "\udc80", "\U0001f600",
]  # fmt: skip

TIMES = [
    "2027-01-01T00:00:00Z", "2027-01-01t00:00:00z", "2027-01-01 00:00:00Z",
    "2027-01-01T00:00Z", "2027-01-01T00:00:00.1Z", "2027-01-01T00:00:00.123456Z",
    "2027-01-01T00:00:00.1234565Z", "2027-01-01T00:00:00.123456789Z",
    "2027-01-01T00:00:00.9999999Z", "2027-01-01T00:00:00+0100", "2027-01-01T00:00:00.Z",
    "2027-12-31T23:59:60Z", "2027-01-01T00:00:00-00:00", "2027-01-01T24:00:00Z",
    "2027-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2027-01-01T00:00:00+23:59",
    "2027-01-01T00:00:00+24:00", "2027-01-01T00:00:00+14:00", "2027-01-01T00:00:00+01:60",
    "2027-01-01T00:00:00,5Z", "20270101T000000Z", "2027-01-01", "2027-01-01T00:00:00",
    "2027-01-01T00:00:00+01", "2027-1-01T00:00:00Z", "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59+00:01",
    "+2027-01-01T00:00:00Z", "2027-01-01T00:00:00 Z", "2027-01-01T00:00:00Z ",
    "\uff12027-01-01T00:00:00Z", "2027-01-01T00:00:00+01:00:30", "2027-W01-1T00:00:00Z",
    "2027-01-01T00:00:00\nZ", "2027-01-01T00:00:00Z\n", "2027-13-01T00:00:00Z", "",
]  # fmt: skip

PAYLOADS = [
    "{}", '{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e400}', '{"a": -1e999}',
    '{"a": 1e308}', '{"a": 1e-400}', '{"a": 0e-20000}', '{"a": 1e-20000}', '{"a": 0.0}',
    '{"a": -0}', '{"a": -0.0}', '{"a": 1E5}', '{"a": 3.14159265358979323846}',
    '{"a": 12345678901234567890123}', '{"a": ' + "1" * 4300 + "}", '{"a": ' + "1" * 4301 + "}",
    '{"a": 0.' + "0" * 17000 + "1}", '{"a": 1.' + "0" * 16500 + "}",
    '{"a": "\\u0000"}', '{"a\\u0000": 1}', '{"a": "\\ud800"}', '{"a": "\\udc00"}',
    '{"a": "\\uD800x"}', '{"a": "\\ud83d\\ude00"}', '{"a": "\\ud800\\u0041"}',
    '{"a": "\\udc00\\ud800"}', '{"a": "\\ud800\\ud800"}', '{"\\ud83d\\ude00": "\\uDE00"}',
    '{"a": "\\\\u0000"}', '{"a": "\\u00e9\\u0041"}', '{"a": 1, "a": 2}',
    '{"a": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "}",
    '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}",
    '{"a": ' + "{" * (MAX_DEPTH - 1) + "}" * (MAX_DEPTH - 1) + "}",
    '{"a": "' + "[" * 300 + '"}', '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"a": 01}', "[1, 2]", "null", "1", '"x"', '{"a": tru}', "{'a': 1}",
]  # fmt: skip


def outcome(decoder: Any, value: bytes) -> Event | str:
    try:
        return decoder(value)  # type: ignore[no-any-return]
    except EnvelopeError as error:
        return str(error)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return bool(b != b)
    return bool(a == b)


def check(value: bytes) -> None:
    careful = outcome(_decode_carefully, value)
    fast = decode_fast(value)
    if fast is not None:
        assert isinstance(careful, Event), (value[:200], careful)
        assert fast == careful
        for name in Event.model_fields:
            assert same(getattr(fast, name), getattr(careful, name)), (name, value[:200])
        assert fast.occurred_at.tzinfo is UTC
        assert isinstance(fast.payload, fast_envelope.JsonObject)
        assert same(json.loads(fast.payload.json), careful.payload)
        assert fast.encode() == careful.encode()
    whole = outcome(decode, value)
    if isinstance(careful, str):
        assert whole == careful
    else:
        assert whole == careful and isinstance(whole, Event)


def value_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def test_the_common_value_takes_the_fast_path() -> None:
    value = value_of(VALID)
    event = decode_fast(value)
    assert event is not None
    assert event.occurred_at == datetime(2027, 3, 28, 0, 30, 0, 123456, tzinfo=UTC)
    check(value)
    assert decode_fast(value_of(VALID | {"key": 42})) is not None


@pytest.mark.parametrize("field", [*VALID, "unknown"])
def test_each_field_with_odd_values(field: str) -> None:
    for odd in ODD_VALUES:
        check(value_of(VALID | {field: odd}))
    if field in VALID:
        data = dict(VALID)
        del data[field]
        check(value_of(data))


@pytest.mark.parametrize("time", TIMES)
def test_times(time: str) -> None:
    check(value_of(VALID | {"occurred_at": time}))


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda text: text[:30])
def test_payloads(payload: str) -> None:
    text = value_of(VALID | {"payload": {}}).decode()
    check(text.replace('"payload": {}', f'"payload": {payload}').encode())


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b'{"id": "\xff"}',
        b"\xef\xbb\xbf" + value_of(VALID),  # a byte order mark
        value_of(VALID) + b"x",
        value_of(VALID).replace(b'"name": "Ada"', b'"name": "A\x00a"'),  # a raw NUL
        value_of(VALID).replace(b'"name": "Ada"', b'"name": "\xed\xa0\x80"'),  # UTF-8 surrogate
        value_of(VALID).replace(b'"id": "e-1"', b'"id": "e-1", "id": "e-2"'),  # duplicate field
        value_of(VALID).replace(b'"version": 7', b'"version": 7, "version": "7"'),
        value_of(VALID).replace(b'"version": 7', b'"version": 7.0'),
        value_of(VALID).replace(b'"version": 7', b'"version": 7e0'),
        value_of(VALID).replace(b'"version": 7', b'"version": -0'),
        value_of(VALID).replace(b'"type": "sync_required"', b'"type": "sync_\\u0072equired"'),
        value_of(VALID).replace(b'"id": "e-1"', b'"\\u0069d": "e-1"'),
        b"[" * 100_000,
    ],
)
def test_odd_values(value: bytes) -> None:
    check(value)


def test_generated_envelopes() -> None:
    """Random envelopes built from the odd values above, several fields odd at once."""
    pool = {field: [VALID[field], *ODD_VALUES[:12]] for field in VALID} | {
        "occurred_at": [VALID["occurred_at"], *TIMES[:20]],
        "version": [7, 0, BIGINT_MAX, -1],
    }
    rng = random.Random(20)
    for _ in range(1500):
        data = {
            field: values[0] if rng.random() < 0.6 else rng.choice(values)
            for field, values in pool.items()
        }
        for field in [f for f in data if rng.random() < 0.1]:
            del data[field]
        check(value_of(data))


def test_keys_and_versions_across_their_ranges() -> None:
    for key, version in itertools.product(
        [0, -1, 2**63 - 1, 2**64, -(2**70), 10**999, "0", "x" * 1000],
        [None, 0, BIGINT_MAX, BIGINT_MAX + 1, -1],
    ):
        check(value_of(VALID | {"key": key, "version": version}))


def test_fast_path_versions_match_envelope() -> None:
    assert fast_envelope.VERSION_MAX == BIGINT_MAX == 2**63 - 1
