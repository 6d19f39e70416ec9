"""The Debezium adapter's fast reading of a record (its schema parsed once per distinct
text) gives what the general path (envelope.json_object) gives, refusals included."""

from __future__ import annotations

import json
import uuid

import pytest

from cronstream.events import debezium, envelope
from cronstream.events.envelope import EnvelopeError

SCHEMA = {"type": "struct", "fields": [{"type": "int64", "field": "id"}], "name": "k"}
DEEP = "[" * 250 + "]" * 250


def wrapped(payload: str, schema: str = json.dumps(SCHEMA)) -> bytes:
    return f'{{"schema":{schema},"payload":{payload}}}'.encode()


VALUES = [
    wrapped('{"id":1}'),
    wrapped('{"id":1.5e3,"n":"caf\\u00e9"}'),
    wrapped('{"id":1}', schema='{"type":"struct","name":"\\u0000"}'),  # NUL in the schema
    wrapped('{"id":"\\ud800"}'),  # a lone surrogate
    '{"schema":{},"payload":{"id":"\ud800"}}'.encode("utf-8", "surrogatepass"),
    wrapped(f'{{"id":{DEEP}}}'),
    wrapped('{"id":1}', schema=f'{{"a":{DEEP}}}'),
    wrapped('{"id":NaN}'),
    wrapped('{"id":1e400}'),
    wrapped("[1]"),
    wrapped('{"id":1}', schema="5"),
    wrapped('{"id":1}')[:-1],  # not JSON
    b'{"schema":{},"payload":{"id":1},"payload":{"id":2}}',
    b'{"schema":{},"payload":{"id":1},"extra":1}',
    b'{"id":1,"name":"schemas off"}',
    b"[1,2]",
    b"\xff\xfe",
]


def general(value: bytes) -> object:
    try:
        return debezium._unwrapped(envelope.json_object(value))
    except EnvelopeError as error:
        return str(error)


def fast(value: bytes) -> object:
    try:
        return debezium._record(value)
    except EnvelopeError as error:
        return str(error)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_fast_path_reads_as_the_general_path(value: bytes) -> None:
    assert fast(value) == general(value)
    assert fast(value) == general(value)  # the schema now cached


def test_the_id_is_uuid5_of_the_change() -> None:
    for name in ["a", "postgresql\x1fdb\x1fpublic\x1ft\x1f123\x1fc\x1f5", "é\u1234x" * 30]:
        assert debezium._uuid5(name) == str(uuid.uuid5(debezium.DEBEZIUM_NAMESPACE, name))
