"""A scanned row's Kafka value written directly, without building an Event.

A scan makes an event of every row: validating it as an Event and encoding it again
cost most of a scan's time. Most rows need neither: the job's name, the trace id and
an entity checked once, a key of text of 1 to 1,000 characters, a version that is a
bigint or none, and a payload that is Postgres's own JSON text of an object (to_json of
the row, or the outbox's column) with no \\u escape and little nesting. Such a row's
value is the envelope written as text around the payload's text, which a worker decodes
to the event `Event.new` would have made. Any other row takes `Event.new`, which says
what is wrong with it, or makes it all the same.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from cronstream.events.envelope import (
    BIGINT_MAX,
    MAX_DEPTH,
    SYNC_REQUIRED,
    TRACE_HEADER,
    TYPE_HEADER,
    Event,
    strict_loads,
    sync_event_id,
)
from cronstream.schedulers.scan.rows import Row, payload_object

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")  # Event.type and Event.entity, at most


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _field(value: str) -> str | None:
    """`value` as JSON, if an Event's source or trace_id (1 to 200 characters) takes it."""
    return _text(value) if 1 <= len(value) <= 200 else None


class Envelopes:
    """The events of one scan's rows: its job as source, its trace id."""

    def __init__(self, job: str, trace_id: str) -> None:
        self.job, self.trace_id = job, trace_id
        self.source = _field(job)
        self.trace = _field(trace_id)
        self.headers = [(TYPE_HEADER, SYNC_REQUIRED.encode()), (TRACE_HEADER, trace_id.encode())]
        self.entities: dict[str, str | None] = {}

    def row(
        self,
        entity: Any,
        key: Any,
        version: Any,
        id_version: object,
        payload: str | bytes | None,
        source_row: str,
        mark: Any,
    ) -> Row:
        """A source row as its event's Kafka record, or an EnvelopeError saying why there
        is none; `id_version` tells the row's states apart (the event id)."""
        event_id = sync_event_id(str(entity), str(key), str(id_version))
        value = self.value(event_id, entity, key, version, payload)
        if value is not None:
            text = str(key)
            return Row(text, f"{entity}:{text}".encode(), self.headers, value, source_row, mark)
        event = Event.new(
            type=SYNC_REQUIRED,
            source=self.job,
            entity=entity,
            key=key,
            version=version,
            payload=payload_object(payload),
            id=event_id,
            occurred_at=datetime.now(UTC),
            trace_id=self.trace_id,
        )
        return Row.of(event, source_row, mark)

    def value(
        self, event_id: str, entity: Any, key: Any, version: Any, payload: Any
    ) -> bytes | None:
        """The Kafka value of the row's event, or None where only `Event.new` can tell."""
        if self.source is None or self.trace is None:
            return None
        if type(key) is int:  # as Event's key takes it
            key = str(key)
        if type(entity) is not str or type(key) is not str or not 1 <= len(key) <= 1000:
            return None
        if version is not None and (type(version) is not int or not 0 <= version <= BIGINT_MAX):
            return None
        entity_json = self.entities.get(entity, "")
        if entity_json == "":
            entity_json = self.entities[entity] = _text(entity) if _NAME.fullmatch(entity) else None
        if entity_json is None or not _is_object(payload):
            return None
        occurred = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        versioned = "" if version is None else f',"version":{version}'
        text = (
            f'{{"id":"{event_id}","type":"{SYNC_REQUIRED}","source":{self.source},'
            f'"entity":{entity_json},"key":{_text(key)}{versioned},'
            f'"occurred_at":"{occurred}","payload":{payload},"trace_id":{self.trace}}}'
        )
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: not for this path
            return None


def _is_object(payload: Any) -> bool:
    """Whether `payload` is JSON text of an object a worker takes as it is (the checks of
    rows.payload_object's quick path)."""
    if type(payload) is not str or "\\u" in payload:
        return False
    if payload.count("[") + payload.count("{") >= MAX_DEPTH:
        return False
    try:
        return type(strict_loads(payload)) is dict
    except (ValueError, RecursionError):
        return False
