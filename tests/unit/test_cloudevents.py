"""The CloudEvents adapter: both content modes of the Kafka binding, and what it refuses."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from cronstream.config.topics import TopicFormat
from cronstream.events import formats
from cronstream.events.cloudevents import Adapter
from cronstream.events.envelope import EnvelopeError, Event

Headers = list[tuple[str, bytes]]

ATTRIBUTES: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/crm/customers",
    "type": "com.example.customer.updated",
    "subject": "42",
    "time": "2027-01-01T13:00:00.5+01:00",
    "entity": "customers",
    "entityversion": "7",
}
WHEN = datetime(2027, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
DATA = {"name": "Ada", "tier": 2}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STRUCTURED: Headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def binary(
    data: Any = DATA, content_type: str | None = "application/json", **attributes: Any
) -> tuple[bytes | None, Headers]:
    """A binary-mode record: attributes (None drops one) in ce_ headers, data as the value."""
    headers = [
        (f"ce_{name}", str(value).encode())
        for name, value in (ATTRIBUTES | attributes).items()
        if value is not None
    ]
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    value = data if isinstance(data, bytes | None) else json.dumps(data).encode()
    return value, headers


def structured(**members: Any) -> bytes:
    """A structured-mode value: the attributes, data and `members` (None drops one)."""
    event = ATTRIBUTES | {"data": DATA, "entityversion": 7} | members
    return json.dumps({name: value for name, value in event.items() if value is not None}).encode()


def decode(value: bytes | None, headers: Headers, entity: str | None = None) -> Event:
    event = Adapter(entity)(value, None, headers)
    assert event is not None
    return event


def refusal(value: bytes | None, headers: Headers, entity: str | None = None) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        Adapter(entity)(value, None, headers)
    return caught.value


EXPECTED = {
    "id": "evt-1",
    "type": "com.example.customer.updated",
    "source": "/crm/customers",
    "entity": "customers",
    "key": "42",
    "version": 7,
    "occurred_at": WHEN,
    "payload": DATA,
    "trace_id": "t-1",
}


def test_binary_mode_maps_every_field() -> None:
    value, headers = binary(content_type="application/json; charset=utf-8")
    event = decode(value, [*headers, ("trace_id", b"t-1")])
    assert event == Event.model_validate(EXPECTED)


def test_structured_mode_maps_every_field() -> None:
    event = decode(structured(), [*STRUCTURED, ("trace_id", b"t-1")])
    assert event == Event.model_validate(EXPECTED)


def test_structured_mode_without_a_content_type_header_is_read_from_the_value() -> None:
    # Producers that forget the header: no content-type and no ce_specversion.
    event = decode(structured(), [("trace_id", b"t-1")])
    assert event == Event.model_validate(EXPECTED)


def test_the_structured_media_type_is_matched_without_regard_to_case() -> None:
    event = decode(structured(), [("Content-Type", b"Application/CloudEvents+JSON")])
    assert event.key == "42"


def test_structured_mode_ignores_ce_headers_and_unknown_extensions() -> None:
    # The binding lets a structured record carry binary-mode headers as well; the value rules.
    headers = [*STRUCTURED, ("ce_subject", b"other"), ("ce_subject", b"\xff"), ("ce_x", b"1")]
    value = structured(comexampleextension1="value", dataschema=None, tracestate="a=b")
    assert decode(value, headers).key == "42"


def test_binary_mode_ignores_headers_it_does_not_read() -> None:
    value, headers = binary(dataschema="https://example.com/s")
    headers += [("ce_other", b"\xff"), ("ce_other", b"x"), ("traceparent", b"junk")]
    assert decode(value, headers).payload == DATA


def test_entityversion_is_optional_and_may_be_a_json_integer() -> None:
    assert decode(*binary(entityversion=None)).version is None
    assert decode(structured(entityversion=2**63 - 1), STRUCTURED).version == 2**63 - 1
    assert decode(*binary(entityversion="0042")).version == 42


def test_the_configured_entity_overrides_the_extension_or_stands_in_for_it() -> None:
    assert decode(*binary(), entity="clients").entity == "clients"
    assert decode(*binary(entity=None), entity="clients").entity == "clients"
    assert decode(structured(entity=None), STRUCTURED, entity="clients").entity == "clients"


def test_a_traceparent_extension_gives_the_trace_id_unless_our_header_does() -> None:
    assert decode(*binary(traceparent=TRACEPARENT)).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    value = structured(traceparent=TRACEPARENT)
    assert decode(value, STRUCTURED).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    data, headers = binary(traceparent=TRACEPARENT)
    assert decode(data, [*headers, ("trace_id", b"mine")]).trace_id == "mine"
    # A later version may append fields after the flags.
    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
    assert decode(*binary(traceparent=later)).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "traceparent",
    [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # v00 has no more
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",  # short
        "",
    ],
)
def test_an_invalid_traceparent_is_not_used(traceparent: str) -> None:
    value, headers = binary(traceparent=traceparent)
    trace_id = decode(value, headers).trace_id
    assert trace_id is not None
    assert trace_id not in traceparent


def test_an_unusable_trace_id_header_falls_back_to_the_traceparent() -> None:
    value, headers = binary(traceparent=TRACEPARENT)
    for bad in (b"", b"\xff", b"a\x00b", b"x" * 201):
        event = decode(value, [*headers, ("trace_id", bad)])
        assert event.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("data", [None, b""])
def test_binary_mode_without_a_value_has_no_data(data: bytes | None) -> None:
    event = decode(*binary(data, type="com.example.customer.deleted"))
    assert event.payload == {}
    assert event.type == "com.example.customer.deleted"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",  # what the SDK's v1 binding writes for datacontenttype
        "application/json; charset=utf-8",
        "application/vnd.example+json",
        "TEXT/JSON",
        "application/cloudevents+json",
        None,
    ],
)
def test_a_structured_event_is_read_whatever_its_content_type(content_type: str | None) -> None:
    headers = [] if content_type is None else [("content-type", content_type.encode())]
    event = decode(structured(), [*headers, ("trace_id", b"t-1")])
    assert event == Event.model_validate(EXPECTED)


def test_a_structured_events_content_type_is_its_datacontenttype_when_it_has_none() -> None:
    # The SDK's v1 binding moves datacontenttype out of the value into content-type.
    encoded = base64.b64encode(json.dumps(DATA).encode()).decode()
    value = structured(data=None, data_base64=encoded)
    assert decode(value, [("content-type", b"application/json")]).payload == DATA
    error = refusal(structured(), [("content-type", b"text/plain")])
    assert (error.field, error.reason) == (
        "datacontenttype",
        "'text/plain' is not JSON: cronstream maps JSON object data only",
    )
    # The value's own datacontenttype stands; the header does not override it.
    value = structured(datacontenttype="application/json")
    assert decode(value, [("content-type", b"text/plain")]).payload == DATA


def test_any_ce_header_means_binary_mode_in_any_case() -> None:
    value, headers = binary()
    shouting = [(name.upper() if name.startswith("ce_") else name, raw) for name, raw in headers]
    assert decode(value, [*shouting, ("trace_id", b"t-1")]) == Event.model_validate(EXPECTED)
    # A structured event beside a ce_ header is binary mode, as the SDK's from_kafka reads it:
    # without ce_specversion it is refused, not guessed at.
    error = refusal(structured(), [("content-type", b"application/json"), ("ce_id", b"1")])
    assert (error.field, "ce_ headers (binary mode) but no ce_specversion" in error.reason) == (
        "specversion",
        True,
    )


def test_structured_mode_without_data_or_with_null_data_has_an_empty_payload() -> None:
    assert decode(structured(data=None), STRUCTURED).payload == {}
    value = json.dumps(json.loads(structured()) | {"data": None}).encode()
    assert decode(value, STRUCTURED).payload == {}


def test_data_of_any_json_content_type_is_read_and_no_content_type_means_json() -> None:
    assert decode(*binary(content_type="application/vnd.example+json")).payload == DATA
    assert decode(*binary(content_type="TEXT/JSON; charset=utf-8")).payload == DATA
    assert decode(*binary(content_type=None)).payload == DATA
    value = structured(datacontenttype="application/problem+json")
    assert decode(value, STRUCTURED).payload == DATA


def test_a_non_json_content_type_without_data_is_no_obstacle() -> None:
    assert decode(*binary(None, content_type="application/avro")).payload == {}


def test_data_base64_is_read_when_the_content_type_says_json() -> None:
    encoded = base64.b64encode(json.dumps(DATA).encode()).decode()
    value = structured(data=None, data_base64=encoded, datacontenttype="application/json")
    assert decode(value, STRUCTURED).payload == DATA


def test_null_attributes_count_as_absent() -> None:
    value = json.dumps(json.loads(structured()) | {"entityversion": None}).encode()
    assert decode(value, STRUCTURED).version is None


def test_a_dead_letter_names_the_format_and_the_field() -> None:
    cloudevents = TopicFormat("cloudevents")
    value, headers = binary(subject=None)
    with pytest.raises(EnvelopeError) as caught:
        formats.decoder(cloudevents)(value, None, headers)
    message = f"invalid {formats.what(cloudevents)}: {caught.value}"
    assert message.startswith("invalid CloudEvent: field 'subject': is missing")


def _json(**members: Any) -> bytes:
    return json.dumps(json.loads(structured()) | members).encode()


def _headers(*pairs: tuple[str, bytes]) -> Headers:
    _, headers = binary()
    names = {name for name, _ in pairs}
    return [(name, raw) for name, raw in headers if name not in names] + list(pairs)


_B64_TEXT = base64.b64encode(b"<xml/>").decode()
_B64_LIST = base64.b64encode(b"[1]").decode()

# (value, headers, field, part of the reason): each refused with its own field named.
MALFORMED: list[tuple[str, bytes | None, Headers, str, str]] = [
    # The record as a whole, and how its mode is told.
    ("null, no headers", None, [], "<value>", "no ce_ headers"),
    ("json, no cloud event", b'{"a": 1}', [], "specversion", "not a CloudEvent"),
    ("not json, no headers", b"\xff\xfe", [], "specversion", "not a CloudEvent"),
    ("json, no cloud event, typed", b'{"a": 1}', [("content-type", b"application/json")],
     "specversion", "not a JSON object with specversion"),
    ("text, typed", b"hello", [("content-type", b"text/plain")], "specversion",
     "not a CloudEvent"),
    ("json list, typed", b"[1]", [("content-type", b"application/json")], "specversion",
     "not a CloudEvent"),
    ("null, typed", None, [("content-type", b"application/json")], "<value>", "no ce_ headers"),
    ("ce headers, no specversion", b"{}", [("ce_id", b"1")], "specversion", "no ce_spec"),
    ("CE headers, no specversion", structured(), [("CE_ID", b"1")], "specversion", "no ce_spec"),
    ("batch", b"[]", [("content-type", b"application/cloudevents-batch+json")],
     "<content-type>", "batches are not supported: send one event per record"),
    ("avro", b"{}", [("content-type", b"application/cloudevents+avro")],
     "<content-type>", "format cronstream does not read"),
    ("two content types", structured(), [*STRUCTURED, *STRUCTURED], "<content-type>",
     "2 headers"),
    ("content type not utf-8", structured(), [("content-type", b"\xff")], "<content-type>",
     "not UTF-8"),
    ("structured null", None, STRUCTURED, "<value>", "is empty"),
    ("structured not json", b"{", STRUCTURED, "<value>", "is not JSON"),
    ("structured a list", b"[1]", STRUCTURED, "<value>", "is JSON array, not an object"),
    ("structured NUL", _json(id="a\u0000b"), STRUCTURED, "<value>", "\\u0000"),
    ("structured deep", b'{"a":' * 300 + b"1" + b"}" * 300, STRUCTURED, "<value>", "nested"),
    # Attributes, in either mode.
    ("specversion 0.3", *binary(specversion="0.3"), "specversion", "must be 1.0, found '0.3'"),
    ("specversion number", _json(specversion=1.0), STRUCTURED, "specversion", "JSON number"),
    ("no id", *binary(id=None), "id", "is missing"),
    ("id too long", *binary(id="i" * 201), "id", "at most 200"),
    ("no source", _json(source=None), STRUCTURED, "source", "is missing"),
    ("no type", *binary(type=None), "type", "is missing"),
    ("type with a space", *binary(type="a b"), "type", "pattern"),
    ("no subject", *binary(subject=None), "subject", "is missing"),
    ("empty subject", *binary(subject=""), "subject", "at least 1"),
    ("subject a number", _json(subject=42), STRUCTURED, "subject", "must be a string"),
    ("no time", *binary(time=None), "time", "orders a key's changes by it"),
    ("time a date", *binary(time="2027-01-01"), "time", "not RFC 3339"),
    ("time no offset", *binary(time="2027-01-01T00:00:00"), "time", "not RFC 3339"),
    ("time no such day", *binary(time="2027-02-30T00:00:00Z"), "time", "not a valid time"),
    ("time before year 1", *binary(time="0001-01-01T00:00:00+14:00"), "time", "out of range"),
    ("time a number", _json(time=1798761600), STRUCTURED, "time", "must be a string"),
    ("no entity", *binary(entity=None), "entity", "topic:cloudevents:<entity>"),
    ("entity with a slash", *binary(entity="crm/customers"), "entity", "pattern"),
    ("version negative", *binary(entityversion="-1"), "entityversion", "string of digits"),
    ("version a fraction", _json(entityversion=1.5), STRUCTURED, "entityversion", "JSON number"),
    ("version a boolean", _json(entityversion=True), STRUCTURED, "entityversion", "JSON boolean"),
    ("version too big", _json(entityversion=2**63), STRUCTURED, "entityversion", "out of range"),
    ("version 40 digits", *binary(entityversion="9" * 40), "entityversion", "out of range"),
    # Binary-mode headers.
    ("two ce_subject", binary()[0], _headers(("ce_subject", b"1"), ("ce_subject", b"2")),
     "subject", "more than one ce_subject header"),
    ("ce_subject not utf-8", binary()[0], _headers(("ce_subject", b"\xff")), "subject",
     "not UTF-8"),
    ("ce_id with NUL", binary()[0], _headers(("ce_id", b"a\x00")), "id", "NUL"),
    # Data.
    ("data a list", _json(data=[1]), STRUCTURED, "data", "is JSON array, not an object"),
    ("data a string", _json(data="x"), STRUCTURED, "data", "is JSON string, not an object"),
    ("data xml", _json(data="<a/>", datacontenttype="application/xml"), STRUCTURED,
     "datacontenttype", "'application/xml' is not JSON"),
    ("binary text", *binary(b"hello", content_type="text/plain"), "datacontenttype",
     "is not JSON"),
    ("binary not json", *binary(b"{oops"), "data", "is not JSON"),
    ("binary a list", *binary(b"[1, 2]"), "data", "is JSON array"),
    ("binary NUL", *binary(b'{"a": "\\u0000"}'), "data", "\\u0000"),
    ("binary not utf-8", *binary(b'{"a": "\xff"}'), "data", "not UTF-8"),
    ("binary NaN", *binary(b'{"a": NaN}'), "data", "not a JSON number"),
    ("data and data_base64", _json(data_base64="e30="), STRUCTURED, "data_base64",
     "cannot be sent with data"),
    ("data_base64 untyped", _json(data=None, data_base64="e30="), STRUCTURED,
     "data_base64", "no declared type"),
    ("data_base64 xml", _json(data=None, data_base64=_B64_TEXT, datacontenttype="text/xml"),
     STRUCTURED, "datacontenttype", "is not JSON"),
    ("data_base64 bad", _json(data=None, data_base64="%%%", datacontenttype="application/json"),
     STRUCTURED, "data_base64", "not valid Base64"),
    ("data_base64 a list",
     _json(data=None, data_base64=_B64_LIST, datacontenttype="application/json"),
     STRUCTURED, "data_base64", "is JSON array"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "headers", "field", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_malformed_record_is_refused_naming_the_field(
    value: bytes | None, headers: Headers, field: str, reason: str
) -> None:
    error = refusal(value, headers)
    assert (error.field, reason in error.reason) == (field, True), str(error)
    assert "\n" not in str(error)


def test_any_damage_to_a_record_gives_an_event_or_a_one_line_refusal() -> None:
    # Cut, flipped and shuffled records of both modes: never a traceback.
    chance = random.Random(20270101)
    samples: list[tuple[bytes | None, Headers]] = [
        binary(),
        binary(traceparent=TRACEPARENT),
        (structured(), STRUCTURED),
        (structured(), []),
        (structured(), [("content-type", b"application/json")]),
    ]
    for _ in range(2000):
        value, headers = chance.choice(samples)
        headers = list(headers)
        if value is not None and chance.random() < 0.7:
            at = chance.randrange(len(value) + 1)
            value = value[:at] + bytes([chance.randrange(256)]) + value[at + 1 :]
        if headers and chance.random() < 0.5:
            name, raw = headers.pop(chance.randrange(len(headers)))
            if chance.random() < 0.7:
                raw = raw[: chance.randrange(len(raw) + 1)] + bytes([chance.randrange(256)])
                headers.insert(chance.randrange(len(headers) + 1), (name, raw))
        try:
            decode(value, headers)
        except EnvelopeError as error:
            assert "\n" not in str(error)
