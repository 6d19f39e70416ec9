"""The built-in handler: upsert each entity's newest payload into entity_projection.

An event whose type ends in `_deleted` or `.deleted` (a Debezium delete, a CloudEvents
`com.example.customer.deleted`) marks the row deleted rather than removing it: the row
keeps the delete's version, so an older change arriving late cannot resurrect it.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import asyncpg
import msgspec

from cronstream.events import exact
from cronstream.events.envelope import SYNC_REQUIRED, Event
from cronstream.events.fast_envelope import JsonObject
from cronstream.handlers.registry import Registry
from cronstream.handlers.sql import query

_ENTITY_KEY = attrgetter("entity", "key")


def newest_per_key(events: Sequence[Event]) -> Sequence[Event]:
    """One event per (entity, key): the one the projection would keep.

    Postgres refuses an upsert that touches one row twice, and ordering here by
    the same rule as the SQL keeps the result independent of batch boundaries, as long
    as a key's events all carry a version or none do (the rule is not transitive across
    the two kinds; README "External change events" asks for one kind per entity).
    """
    if len(set(map(_ENTITY_KEY, events))) == len(events):  # no key twice (checked in C)
        return events
    newest: dict[tuple[str, str], Event] = {}
    for event in events:
        current = newest.get((event.entity, event.key))
        if current is None or _not_older(event, current):
            newest[(event.entity, event.key)] = event
    return list(newest.values())


def _not_older(candidate: Event, current: Event) -> bool:
    if candidate.version is not None and current.version is not None:
        return candidate.version >= current.version
    return candidate.occurred_at >= current.occurred_at


def payload_json(payload: dict[str, Any]) -> msgspec.Raw:
    """A payload's JSON text for jsonb: as it came in when decoded from an envelope
    (jsonb keeps its digits), else written with numeric columns' digits kept."""
    return payload.raw if type(payload) is JsonObject else msgspec.Raw(exact.dumps(payload))


def rows_json(rows: Sequence[Event]) -> str:
    """The rows as projection_upsert takes them: one JSON array, written in C."""
    types = list(map(attrgetter("type"), rows))
    deletes = {kind: is_delete(kind) for kind in set(types)}  # once per type
    columns = zip(
        map(attrgetter("entity"), rows),
        map(attrgetter("key"), rows),
        map(attrgetter("version"), rows),
        map(attrgetter("occurred_at"), rows),  # RFC 3339 with microseconds, in UTC
        map(payload_json, map(attrgetter("payload"), rows)),
        map(attrgetter("id"), rows),
        map(attrgetter("source"), rows),
        map(deletes.__getitem__, types),
        strict=True,
    )
    return msgspec.json.encode(list(columns)).decode()


async def project(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    await connection.execute(query("projection_upsert"), rows_json(newest_per_key(events)))


def is_delete(event_type: str) -> bool:
    return event_type.endswith(("_deleted", ".deleted"))


def register(registry: Registry) -> None:
    """The projection applies sync_required events, and external change events of types
    with no handler of their own."""
    registry.register(SYNC_REQUIRED, project)
    registry.external_fallback = project
