"""CloudEvents 1.0 on Kafka (the Kafka protocol binding), binary and structured mode, as events.

How a record is read, as the reference SDK's `from_kafka` tells the content modes apart:

- a `content-type` header `application/cloudevents...` (any parameters, any case) means
  structured mode, as the binding says, even beside ce_ headers; the value is the event in
  the JSON format, extensions as top-level members. Other `application/cloudevents...`
  formats are refused, batches (`application/cloudevents-batch+json`) too: send one event
  per record.
- otherwise any `ce_` header (any case) means binary mode: each attribute in a
  `ce_<name>` header (UTF-8), `content-type` is `datacontenttype`, the value is the data
  (null or empty: no data).
- otherwise a value that is a JSON object with `specversion` is a structured event,
  whatever `content-type` says: the SDK's v1 binding (`cloudevents.kafka` in SDK 1.x)
  moves a structured event's `datacontenttype` into `content-type` (`application/json`),
  and some producers send no header at all. Such a `content-type` is the event's
  `datacontenttype` when the value has none.

An event maps to an Event:

- id, source, type: the same attributes;
- key: `subject` (required here: it names the row the event is about);
- occurred_at: `time` (RFC 3339; required here, although optional in CloudEvents: the
  projection orders a key's changes by it when they carry no `entityversion`, and
  filling in the time of reading would let a replay reorder them);
- entity: the topic's configured entity, else the `entity` extension;
- version: the `entityversion` extension, an integer or a string of digits (binary
  headers are text; CloudEvents integers stop at 2^31, so send larger ones as strings);
- payload: `data`, which must be a JSON object (absent or null: `{}`) under a JSON
  `datacontenttype` (`*/json`, `*/*+json`, or none). `data_base64` is read only when
  `datacontenttype` says JSON; other binary data is refused, since no payload holds it;
- trace_id: our `trace_id` header when it is usable, else the trace id of a valid W3C
  `traceparent` extension, else a fresh one.

Attributes set to JSON null count as absent, as the JSON format says. A record that
cannot be mapped raises EnvelopeError naming the attribute as the producer spelled it
(a dead letter reads "invalid CloudEvent: field 'subject': is missing ...").
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from cronstream.events import formats
from cronstream.events.envelope import (
    BIGINT_MAX,
    WHOLE_VALUE,
    EnvelopeError,
    Event,
    Headers,
    from_fields,
    header_trace_id,
    json_object,
)
from cronstream.runtime.untrusted import json_type_name, shown

CONTENT_TYPE = "<content-type>"  # the `field` of an error about the content-type header
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPECVERSION = "1.0"
HEADER_PREFIX = "ce_"
# The attributes read from binary-mode headers; other ce_ headers are left alone.
_READ = frozenset(
    {"specversion", "id", "source", "type", "subject", "time"}
    | {"entity", "entityversion", "traceparent"}
)
# Where from_fields' Event fields came from, as the producer named them.
_SENT_AS = {"key": "subject", "occurred_at": "time", "payload": "data", "version": "entityversion"}

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_NO_ENTITY = (
    "set the CloudEvents extension 'entity', or name one in "
    "CRONSTREAM_EXTERNAL_TOPICS as topic:cloudevents:<entity>"
)
_DIGITS = re.compile(r"[0-9]+")
# W3C Trace Context: version-traceid-parentid-flags; later versions may append "-...".
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?", re.DOTALL
)


def _media_type(content_type: str) -> str:
    """The media type without parameters, lower-cased (media types ignore case)."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    _, slash, subtype = _media_type(content_type).partition("/")
    return bool(slash) and (subtype == "json" or subtype.endswith("+json"))


def _header_text(name: str, raw: bytes, field: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError(field, f"header {shown(name)} is not UTF-8") from None
    if "\x00" in text:
        raise EnvelopeError(field, f"header {shown(name)} contains NUL, which Postgres refuses")
    return text


def _content_type(headers: Headers) -> str | None:
    # The binding names it `content-type`; a producer writing `Content-Type` means the same.
    found = [raw for name, raw in headers if name.lower() == "content-type"]
    if len(found) > 1:
        raise EnvelopeError(CONTENT_TYPE, f"is set by {len(found)} headers, expected one")
    text = _header_text("content-type", found[0], CONTENT_TYPE) if found else ""
    return text if text.strip() else None  # an empty header says nothing


def _binary_attributes(headers: Headers) -> dict[str, str]:
    """The attributes cronstream reads, from their ce_ headers (named in any case)."""
    attributes: dict[str, str] = {}
    for name, raw in headers:
        lowered = name.lower()
        attribute = lowered.removeprefix(HEADER_PREFIX)
        if attribute == lowered or attribute not in _READ:
            continue
        if attribute in attributes:
            raise EnvelopeError(attribute, f"is set by more than one {name} header")
        attributes[attribute] = _header_text(name, raw, attribute)
    return attributes


def _unmarked_event(value: bytes) -> dict[str, Any] | None:
    """A value with no mode marked in its headers: a JSON object with specversion, else None."""
    try:
        event = json_object(value)
    except EnvelopeError:
        return None
    return event if "specversion" in event else None


def _found(value: Any) -> str:
    return f"'{shown(value)}'" if isinstance(value, str) else f"JSON {json_type_name(value)}"


def _optional(attributes: dict[str, Any], name: str) -> str | None:
    """A string attribute, None when absent (or JSON null, which means the same)."""
    value = attributes.get(name)
    if value is not None and not isinstance(value, str):
        raise EnvelopeError(name, f"must be a string, found {_found(value)}")
    return value


def _required(attributes: dict[str, Any], name: str, why: str) -> str:
    value = _optional(attributes, name)
    if value is None:
        raise EnvelopeError(name, f"is missing: {why}")
    return value


def _time(text: str) -> datetime:
    if len(text) > 64 or not _RFC3339.fullmatch(text):
        raise EnvelopeError("time", f"{_found(text)} is not RFC 3339, e.g. 2027-01-01T00:00:00Z")
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError as error:  # 2027-02-30, a leap second, an offset of 24:00
        raise EnvelopeError("time", f"{_found(text)} is not a valid time: {error}") from None


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        # Length first: int() of thousands of digits is slow, and refused past 4300.
        digits = value.lstrip("0") or "0"
        number = int(digits) if len(digits) <= 19 else BIGINT_MAX + 1
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise EnvelopeError(
            "entityversion",
            f"must be an integer or a string of digits, found {_found(value)}",
        )
    if not 0 <= number <= BIGINT_MAX:
        raise EnvelopeError("entityversion", f"{shown(str(value))} is out of range 0 to 2^63-1")
    return number


def _trace_parent(value: Any) -> str | None:
    """The trace id of a valid W3C traceparent, else None (a bad one is only not used)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def _json_data(data: bytes, field: str, content_type: str | None) -> dict[str, Any]:
    """Data bytes that a JSON datacontenttype (or none, in binary mode) says are JSON."""
    try:
        return json_object(data, depth=2)  # the payload sits one level below the value
    except EnvelopeError as error:
        declared = f" (datacontenttype {shown(content_type)})" if content_type else ""
        raise EnvelopeError(field, f"{error.reason}{declared}") from None


def _not_json(content_type: str) -> EnvelopeError:
    return EnvelopeError(
        "datacontenttype",
        f"'{shown(content_type)}' is not JSON: cronstream maps JSON object data only",
    )


def _structured_data(event: dict[str, Any]) -> dict[str, Any]:
    content_type = _optional(event, "datacontenttype")
    data = event.get("data")
    encoded = event.get("data_base64")
    if data is not None and encoded is not None:
        raise EnvelopeError("data_base64", "cannot be sent with data: send one of them")
    if data is not None:
        if content_type is not None and not _is_json(content_type):
            raise _not_json(content_type)
        if not isinstance(data, dict):
            raise EnvelopeError("data", f"is JSON {json_type_name(data)}, not an object")
        return data
    if encoded is None:
        return {}
    if content_type is None:
        raise EnvelopeError(
            "data_base64",
            "is binary data of no declared type: set a JSON datacontenttype, "
            "or send the object as data",
        )
    if not _is_json(content_type):
        raise _not_json(content_type)
    if not isinstance(encoded, str):
        raise EnvelopeError("data_base64", f"must be a string, found {_found(encoded)}")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("data_base64", "is not valid Base64") from None
    return _json_data(decoded, "data_base64", content_type)


def _binary_data(value: bytes | None, content_type: str | None) -> dict[str, Any]:
    if not value:  # the binding's "no data"; an empty value is taken as the same
        return {}
    if content_type is not None and not _is_json(content_type):
        raise _not_json(content_type)
    return _json_data(value, "data", content_type)


class Adapter:
    """Maps one CloudEvents record to an Event; `entity` overrides the `entity` extension."""

    def __init__(self, entity: str | None = None) -> None:
        self.entity = entity

    def __call__(self, value: bytes | None, key: bytes | None, headers: Headers) -> Event | None:
        content_type = _content_type(headers)
        if content_type is not None and _media_type(content_type).startswith(
            "application/cloudevents"
        ):
            return self._structured(value, content_type, headers)
        if any(name.lower().startswith(HEADER_PREFIX) for name, _ in headers):
            attributes = _binary_attributes(headers)
            if "specversion" not in attributes:
                raise EnvelopeError(
                    "specversion",
                    "is missing: the record has ce_ headers (binary mode) but no ce_specversion",
                )
            return _event(self._fields(attributes, headers), _binary_data(value, content_type))
        if value is None:
            raise EnvelopeError(WHOLE_VALUE, "is empty and the record has no ce_ headers")
        event = _unmarked_event(value)
        if event is None:
            raise EnvelopeError(
                "specversion",
                "is missing: not a CloudEvent (no ce_ headers for binary mode, and the value "
                "is not a JSON object with specversion for structured mode)",
            )
        if content_type is not None and event.get("datacontenttype") is None:
            event["datacontenttype"] = content_type
        return _event(self._fields(event, headers), _structured_data(event))

    def _structured(self, value: bytes | None, content_type: str, headers: Headers) -> Event:
        media_type = _media_type(content_type)
        if media_type == BATCH:
            raise EnvelopeError(
                CONTENT_TYPE, "batches are not supported: send one event per record"
            )
        if media_type != STRUCTURED:
            raise EnvelopeError(
                CONTENT_TYPE,
                f"'{shown(content_type)}' is an event format cronstream does not read: "
                f"send {STRUCTURED} or binary mode",
            )
        if value is None:
            raise EnvelopeError(WHOLE_VALUE, "is empty: a structured-mode record carries the event")
        event = json_object(value)
        return _event(self._fields(event, headers), _structured_data(event))

    def _fields(self, attributes: dict[str, Any], headers: Headers) -> dict[str, Any]:
        """The Event's fields but the payload, checked in the order a reader would."""
        specversion = _required(attributes, "specversion", "CloudEvents require it")
        if specversion != SPECVERSION:
            raise EnvelopeError(
                "specversion", f"must be {SPECVERSION}, found {_found(specversion)}"
            )
        required = "CloudEvents require it"
        return {
            "id": _required(attributes, "id", required),
            "source": _required(attributes, "source", required),
            "type": _required(attributes, "type", required),
            "key": _required(attributes, "subject", "cronstream keys the entity's row by it"),
            "occurred_at": _time(
                _required(attributes, "time", "cronstream orders a key's changes by it")
            ),
            "entity": self.entity or _required(attributes, "entity", _NO_ENTITY),
            "version": _version(attributes.get("entityversion")),
            "trace_id": header_trace_id(headers) or _trace_parent(attributes.get("traceparent")),
        }


def _event(fields: dict[str, Any], payload: dict[str, Any]) -> Event:
    try:
        return from_fields(fields | {"payload": payload})
    except EnvelopeError as error:
        field = _SENT_AS.get(error.field, error.field)
        raise EnvelopeError(field, error.reason, error.others) from None


formats.register("cloudevents", "CloudEvent", Adapter)
