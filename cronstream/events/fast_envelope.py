"""The envelope's fast path: the common Kafka value read in one msgspec pass, its
payload kept as the JSON text it came in.

`fields` takes only values the careful path (envelope.py: pydantic over json.loads)
certainly takes, and gives the same fields; anything else, however valid, is None and
goes there, which says precisely what is wrong. The rules mirror `Event`'s and
`json_object`'s; tests/unit/test_envelope_fast.py runs both paths over good and bad
values. Constraints checked in Python here (names, time) cost a set lookup or one regex,
where msgspec's `pattern` would run `re.search` for every field of every value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from cronstream.events import exact

VERSION_MAX = 2**63 - 1  # envelope.BIGINT_MAX: versions land in Postgres bigint columns
MAX_DEPTH = 200  # envelope.MAX_DEPTH: deeper JSON is refused

# NAME_PATTERN's (runtime/names.py) as a full match: `$` would also match before a final
# "\n" in Python's re, which pydantic's (Rust) regex refuses.
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
# The RFC 3339 times both parsers read alike: at most 6 fraction digits (pydantic
# truncates more, msgspec and others round), valid hours, minutes and seconds, an offset.
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_KNOWN_NAMES: set[str] = set()  # types and entities seen valid: a batch repeats a few
_KNOWN_NAMES_MAX = 4096

Text = Annotated[str, Meta(min_length=1, max_length=200)]


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # holds no cycles
    id: Text
    type: str
    source: Text
    entity: str
    key: Annotated[str, Meta(min_length=1, max_length=1000)] | int
    occurred_at: str
    payload: msgspec.Raw
    version: Annotated[int, Meta(ge=0, le=VERSION_MAX)] | None = None
    trace_id: Text | None = None


class JsonObject(dict[str, Any]):
    """A payload as handlers see it (a dict), with the JSON text it was decoded from, so
    the projection stores it without writing it again (and jsonb keeps every digit).
    Handlers treat payloads as read-only: the text is not updated on a change."""

    __slots__ = ("raw",)
    raw: msgspec.Raw

    @property
    def json(self) -> str:
        return str(self.raw, "utf-8")  # valid UTF-8: decoded once already


def _float(text: str) -> float:
    """A payload's float, as json.loads reads it; a ValueError (the careful path then
    says why) for one out of range, or whose digits Postgres's numeric cannot hold."""
    number = float(text)
    if number - number != 0.0:  # an infinity
        raise ValueError(text)
    # A non-zero float's text of under 16,000 characters has a scale under 16,383.
    if number == 0.0 or len(text) > 16_000:
        exact.numeric(Decimal(text))
    return number


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_PAYLOAD = msgspec.json.Decoder(dict[str, Any], float_hook=_float)
_NOT_TAKEN = (msgspec.MsgspecError, ValueError, RecursionError)  # UnicodeDecodeError too


def _brackets(raw: msgspec.Raw) -> int:
    text = bytes(raw)
    return text.count(b"[") + text.count(b"{")


def _too_deep(data: dict[str, Any] | list[Any], depth: int) -> bool:
    """Whether `data`'s items, at nesting `depth`, hold a dict or list deeper than MAX_DEPTH."""
    for item in data.values() if isinstance(data, dict) else data:
        if isinstance(item, dict | list) and (depth > MAX_DEPTH or _too_deep(item, depth + 1)):
            return True
    return False


def _name(text: str) -> bool:
    if _NAME.fullmatch(text) is None:
        return False
    if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
        _KNOWN_NAMES.add(text)
    return True


def fields(value: bytes) -> dict[str, Any] | None:
    """An envelope's validated fields, its payload a JsonObject, its time in UTC; None
    when only the careful path can tell (which a value with a `\\u0000` escape, or nested
    too deeply, always goes to)."""
    # NUL, which Postgres text and jsonb refuse (msgspec refuses a lone surrogate itself).
    if value.find(b"\\u0000") >= 0:  # (`in` first tries the needle as an integer)
        return None
    try:
        envelope = _ENVELOPE.decode(value)
        payload = JsonObject(_PAYLOAD.decode(envelope.payload))
        time = envelope.occurred_at
        if _TIME.fullmatch(time) is None:
            return None
        occurred_at = datetime.fromisoformat(time)
        if time[-1] != "Z":  # else already in UTC
            occurred_at = occurred_at.astimezone(UTC)
    except (*_NOT_TAKEN, OverflowError):  # February 30th; before year 1 in UTC
        return None
    kind, entity = envelope.type, envelope.entity
    if not (kind in _KNOWN_NAMES or _name(kind)) or not (entity in _KNOWN_NAMES or _name(entity)):
        return None
    raw = payload.raw = envelope.payload
    # Nesting deeper than MAX_DEPTH (the payload sits at 2) takes 200 brackets and their
    # closing ones: cheaper to rule out than to walk.
    if len(raw) >= 2 * MAX_DEPTH and _brackets(raw) >= MAX_DEPTH and _too_deep(payload, 3):
        return None
    key = envelope.key
    return {
        "id": envelope.id,
        "type": kind,
        "source": envelope.source,
        "entity": entity,
        "key": key if type(key) is str else str(key),
        "version": envelope.version,
        "occurred_at": occurred_at,
        "payload": payload,
        "trace_id": envelope.trace_id,
    }
