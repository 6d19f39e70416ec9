"""Reasons name JSON values as JSON does (null, array, ...), never as Python does
(NoneType, list, ...): a dead letter's reader wrote JSON, not Python."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from cronstream.events import cloudevents, debezium
from cronstream.events.envelope import EnvelopeError, Event, decode, json_object
from cronstream.handlers.decoding import Decoders, Undecodable
from cronstream.handlers.records import ConsumedRecord
from cronstream.runtime.untrusted import json_type_name
from cronstream.schedulers.jobs import JobError, row_job, to_job

PYTHONS = re.compile(
    r"\b(NoneType|dict|dictionary|list|tuple|int|float|str|bool|Decimal|instance of)\b"
)

# Every kind of JSON value that is not an object, and its name.
NOT_OBJECTS: list[tuple[Any, str]] = [
    (None, "null"),
    (True, "boolean"),
    (7, "number"),
    (1.5, "number"),
    ("x", "string"),
    ([1], "array"),
]


@pytest.mark.parametrize(
    ("value", "name"),
    [
        *NOT_OBJECTS,
        (False, "boolean"),  # a bool is an int to Python, not to JSON
        (Decimal("1.50"), "number"),  # how exact JSON parsing gives a fraction
        (10**30, "number"),
        ((1, 2), "array"),
        ({"a": 1}, "object"),
        (object(), "value"),  # nothing a JSON parser returns
    ],
)
def test_json_type_names(value: object, name: str) -> None:
    assert json_type_name(value) == name


def reason(error: BaseException) -> str:
    assert not PYTHONS.search(str(error)), str(error)
    return str(error)


@pytest.mark.parametrize(("value", "name"), NOT_OBJECTS)
def test_a_value_that_is_no_object_is_named_in_jsons_words(value: object, name: str) -> None:
    with pytest.raises(EnvelopeError) as whole:
        json_object(json.dumps(value))
    assert reason(whole.value) == f"the value is JSON {name}, not an object"
    if value is None:  # null data is no data, {}, as the CloudEvents JSON format says
        return
    with pytest.raises(EnvelopeError) as data:
        cloudevents.Adapter()(json.dumps(_cloudevent(data=value)).encode(), None, [])
    assert reason(data.value) == f"field 'data': is JSON {name}, not an object"


def _cloudevent(**members: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/s",
        "type": "t",
        "entity": "customers",
        "subject": "1",
        "entityversion": 1,
        "time": "2027-01-01T00:00:00Z",
    } | members


@pytest.mark.parametrize(("value", "name"), [v for v in NOT_OBJECTS if v[0] is not None])
def test_debezium_and_cloudevents_reasons_say_json_names(value: object, name: str) -> None:
    change = {"op": "c", "source": {"table": "t"}, "after": value}
    with pytest.raises(EnvelopeError) as row:
        debezium.Adapter()(json.dumps(change).encode(), None, [])
    assert f"is JSON {name}, not an object" in reason(row.value)
    with pytest.raises(EnvelopeError) as source:
        debezium.Adapter()(json.dumps(change | {"source": value}).encode(), None, [])
    assert f"must be an object, found JSON {name}" in reason(source.value)
    with pytest.raises(EnvelopeError) as wrapped:
        debezium.Adapter()(json.dumps({"schema": {}, "payload": value}).encode(), None, [])
    assert f"is JSON {name}, not an object" in reason(wrapped.value)
    if not isinstance(value, str):
        with pytest.raises(EnvelopeError) as attribute:
            cloudevents.Adapter()(json.dumps(_cloudevent(id=value)).encode(), None, [])
        assert f"must be a string, found JSON {name}" in reason(attribute.value)


def test_an_envelope_field_of_the_wrong_kind_is_named_in_jsons_words() -> None:
    fields = json.loads(Event.new(type="t", source="s", entity="e", key=1, payload={}).encode())
    with pytest.raises(EnvelopeError) as payload:
        decode(json.dumps(fields | {"payload": [1]}).encode())
    assert reason(payload.value) == "field 'payload': Input should be an object"


def test_a_jobs_wrong_kinds_are_named_in_jsons_words() -> None:
    with pytest.raises(JobError) as fields:
        to_job("j", [1], "jobs.toml")
    assert reason(fields.value).endswith("expected a table of fields, found an array")
    with pytest.raises(JobError) as scan:
        to_job("j", {"schedule": "* * * * *", "scan": 5}, "jobs.toml")
    assert reason(scan.value).endswith("scan: Input should be an object")
    with pytest.raises(JobError) as config:
        row_job({"name": "j", "config": "null"})  # its config is read first
    assert reason(config.value) == "job 'j' (cron_jobs): config: is JSON null, not an object"


def test_json_nested_past_what_a_decoder_catches_is_told_so() -> None:
    def too_deep(value: bytes | None, key: bytes | None, headers: object) -> Event:
        raise RecursionError("maximum recursion depth exceeded")

    decoders = Decoders()
    decoders._envelopes = ("envelope", too_deep)  # a decoder that lets one through
    with pytest.raises(Undecodable, match=r"^invalid envelope: nested too deeply$"):
        decoders.reader("t")(ConsumedRecord("t", 0, 0, b"{}"))
