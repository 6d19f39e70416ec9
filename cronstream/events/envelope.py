"""The event envelope: what every Kafka value in cronstream looks like.

Kafka key: "<entity>:<key>", so all events of one entity key land in one partition
and keep their order. Kafka value: the envelope as UTF-8 JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from cronstream.errors import CronstreamError, problems
from cronstream.events import fast_envelope
from cronstream.runtime.names import NAME_PATTERN
from cronstream.runtime.untrusted import json_type_name

# uuid5 namespace for deterministic sync_required ids: the same (entity, key, version)
# always yields the same id, so a re-emit after a crash is recognisably the same event.
SYNC_NAMESPACE = uuid.UUID("6f1c1b1e-4c2a-5d7e-9a40-63726f6e7374")
_SYNC_NAMESPACE_BYTES = SYNC_NAMESPACE.bytes
SYNC_REQUIRED = "sync_required"
TRACE_HEADER = "trace_id"
TYPE_HEADER = "event_type"

Headers = Sequence[tuple[str, bytes]]  # a Kafka record's headers, as the adapters get them
WHOLE_VALUE = "<value>"  # the `field` of an error about the value as a whole
# Deeper JSON is refused: pydantic cannot serialize past about 255 levels, and a value a
# worker takes must re-encode (dead letters, handlers, publish).
MAX_DEPTH = fast_envelope.MAX_DEPTH


class EnvelopeError(CronstreamError, ValueError):
    """An input is not a valid envelope; `field` names the first bad field."""

    exit_code = 2

    def __init__(self, field: str, reason: str, others: int = 0) -> None:
        self.field = field
        self.reason = reason
        self.others = others
        more = f" (and {others} more problem{'s' * (others > 1)})" if others else ""
        where = "the value" if field == WHOLE_VALUE else f"field '{field}':"
        super().__init__(f"{where} {reason}{more}")


def _key_as_text(value: Any) -> Any:
    # Primary keys are often integers; the envelope carries them as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _time_as_text(value: Any) -> Any:
    # Lax pydantic reads a number as Unix time; the envelope's time is RFC 3339 text.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 string, e.g. 2027-01-01T00:00:00Z")
    return value


# Versions land in Postgres bigint columns; a larger one would fail inside a handler.
BIGINT_MAX = fast_envelope.VERSION_MAX
_new_model = object.__new__
_set = object.__setattr__


class Event(BaseModel):
    """A validated envelope. Build new ones with `Event.new`; decode with `decode`."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    source: str = Field(min_length=1, max_length=200)
    entity: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    key: Annotated[str, BeforeValidator(_key_as_text)] = Field(min_length=1, max_length=1000)
    # strict: "5", true and 5.0 are not versions; a worker must not guess what was meant.
    version: int | None = Field(default=None, ge=0, le=BIGINT_MAX, strict=True)
    occurred_at: Annotated[datetime, BeforeValidator(_time_as_text)]
    payload: dict[str, Any]
    trace_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset (RFC 3339, e.g. 2027-01-01T00:00:00Z)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise ValueError("is out of range in UTC") from None

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    @classmethod
    def new(
        cls,
        *,
        type: str,
        source: str,
        entity: str,
        key: str | int,
        payload: dict[str, Any],
        version: int | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
        trace_id: str | None = None,
    ) -> Event:
        """A new event with a fresh id, the current time and a fresh trace id by default."""
        return from_fields(
            {
                "type": type,
                "source": source,
                "entity": entity,
                "key": key,
                "payload": payload,
                "version": version,
                "id": id,
                "occurred_at": occurred_at,
                "trace_id": trace_id,
            }
        )

    @property
    def kafka_key(self) -> bytes:
        return f"{self.entity}:{self.key}".encode()

    @property
    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [(TYPE_HEADER, self.type.encode())]
        if self.trace_id:
            headers.append((TRACE_HEADER, self.trace_id.encode()))
        return headers

    def encode(self) -> bytes:
        """The Kafka value: compact UTF-8 JSON. Check values not from `decode` with `encoded`."""
        return self.model_dump_json(exclude_none=True).encode()


_ALL_FIELDS = set(Event.model_fields)


def sync_event_id(entity: str, key: str, version: int | str | None) -> str:
    """The deterministic id of a sync_required event for one row version: uuid5's, made
    here by hand (a scan makes one per row; uuid.UUID costs three times the hash)."""
    name = f"{entity}\x1f{key}\x1f{version}".encode()
    digest = bytearray(hashlib.sha1(_SYNC_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _raise_first(error: ValidationError) -> NoReturn:
    found = problems(error)
    field, reason = found[0]
    raise EnvelopeError(field or WHOLE_VALUE, reason, len(found) - 1) from None


def header_trace_id(headers: Headers) -> str | None:
    """The record's `trace_id` header when usable as an event's trace id (UTF-8 text of
    1 to 200 characters without NUL), else None: a bad header never fails the record."""
    for name, raw in headers:
        if name == TRACE_HEADER:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
            return text if 0 < len(text) <= 200 and "\x00" not in text else None
    return None


def new_trace_id() -> str:
    return uuid.uuid4().hex


def from_fields(fields: dict[str, Any]) -> Event:
    """Validate a dict, filling id, occurred_at and trace_id when absent or None."""
    filled = {name: value for name, value in fields.items() if value is not None}
    # Not setdefault: its default is computed even when unused, and uuid4 is costly.
    if "id" not in filled:
        filled["id"] = str(uuid.uuid4())
    if "occurred_at" not in filled:
        filled["occurred_at"] = datetime.now(UTC)
    if "trace_id" not in filled:
        filled["trace_id"] = new_trace_id()
    try:
        return Event.model_validate(filled)
    except ValidationError as error:
        _raise_first(error)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _has_non_finite(data: dict[str, Any] | list[Any], depth: int) -> bool:
    """NaN or an infinity anywhere in `data` (pydantic's JSON parser yields them), or
    nesting deeper than MAX_DEPTH (`data` being at `depth`): a value for the careful path.
    """
    if depth > MAX_DEPTH:
        return True
    items: Iterable[Any] = data.values() if isinstance(data, dict) else data
    for item in items:
        kind = type(item)
        if kind is float:
            if item - item != 0.0:  # nan - nan and inf - inf are nan
                return True
        elif (kind is dict or kind is list) and _has_non_finite(item, depth + 1):
            return True
    return False


_STRICT_JSON = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _refused_text(data: Any, depth: int = 1) -> str | None:
    """Why `data` (at nesting `depth`) could not be stored or re-encoded, if so: a string
    Postgres refuses, or nesting deeper than MAX_DEPTH."""
    pending = [(data, depth)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list) and level > MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, dict):
            pending.extend((key, level) for key in item)
            pending.extend((value, level + 1) for value in item.values())
        elif isinstance(item, list):
            pending.extend((value, level + 1) for value in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "contains \\u0000, which Postgres text and jsonb refuse"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return None


def refused_payload(payload: dict[str, Any]) -> str | None:
    """Why a worker would refuse `payload` as an event's payload, if it would."""
    return _refused_text(payload, 2)  # the payload sits one level below the value


def refused_json(data: Any, depth: int) -> str | None:
    """Why a worker would refuse `data`, a value at nesting `depth` of a Kafka value (a
    payload's column: 3), if it would."""
    return _refused_text(data, depth)


def decode(value: bytes | None) -> Event:
    """Strictly decode a Kafka value; every required field must be present.

    Values Postgres would refuse later (NUL, lone surrogates, NaN, Infinity, numbers out
    of range) are refused here, with a reason, rather than failing inside a handler.
    """
    if value is None:
        raise EnvelopeError(WHOLE_VALUE, "is empty (a tombstone)")
    event = decode_fast(value)
    return _decode_carefully(value) if event is None else event


def decode_fast(value: bytes) -> Event | None:
    """`decode` in one pass for the common value; None where only the careful path
    (which says precisely what is wrong) can tell."""
    fields = fast_envelope.fields(value)
    if fields is None:
        return None
    event = _new_model(Event)  # validated above: what model_construct does, at a third
    _set(event, "__dict__", fields)
    _set(event, "__pydantic_fields_set__", _ALL_FIELDS)  # copied by model_copy before a change
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def _decode_carefully(value: bytes) -> Event:
    try:
        return Event.model_validate(json_object(value))
    except ValidationError as error:
        _raise_first(error)


def encoded(event: Event) -> bytes:
    """`event.encode()`, refused unless `decode` takes it back: a worker's exact rules.

    For events built from other input than `decode`'s (CLI options, Python values),
    which may hold text Postgres refuses, or values JSON cannot carry.
    """
    refused = refused_payload(event.payload)
    if refused is not None:
        raise EnvelopeError("payload", refused)
    try:
        non_finite = _has_non_finite(event.payload, 2)
        value = event.encode()
    except ValueError as error:  # pydantic's serializer on a lone surrogate, for one
        raise EnvelopeError(WHOLE_VALUE, f"cannot be encoded as JSON: {error}") from None
    except RecursionError:
        raise EnvelopeError(WHOLE_VALUE, "is nested too deeply") from None
    if non_finite:  # pydantic wrote them as null
        raise EnvelopeError("payload", "NaN and Infinity are not JSON numbers")
    decode(value)
    return value


def strict_loads(value: bytes | str) -> Any:
    """`json.loads`, with a ValueError for NaN, Infinity and numbers out of range."""
    if type(value) is str and not value.startswith("\ufeff"):
        return _STRICT_JSON.decode(value)  # json.loads(str) without a decoder per call
    return json.loads(value, parse_float=_finite, parse_constant=_no_constant)


def json_object(value: bytes | str, depth: int = 1) -> dict[str, Any]:
    """A JSON object Postgres can store whole, at nesting `depth` (2: an event's
    payload), or an EnvelopeError saying why not."""
    try:
        data = strict_loads(value)
    except UnicodeDecodeError as error:
        raise EnvelopeError(WHOLE_VALUE, f"is not UTF-8: {error.reason}") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise EnvelopeError(WHOLE_VALUE, f"is not JSON: {error.msg} at {where}") from None
    except ValueError as error:  # from the hooks above, or an integer of over 4300 digits
        reason = str(error)
        if "integer string conversion" in reason:  # Python's advice would not help a user
            reason = "an integer has more than 4300 digits"
        raise EnvelopeError(WHOLE_VALUE, f"is not storable JSON: {reason}") from None
    except RecursionError:
        raise EnvelopeError(WHOLE_VALUE, "is nested too deeply") from None
    if not isinstance(data, dict):
        raise EnvelopeError(WHOLE_VALUE, f"is JSON {json_type_name(data)}, not an object")
    refused = _refused_text(data, depth)
    if refused is not None:
        raise EnvelopeError(WHOLE_VALUE, refused)
    return data
