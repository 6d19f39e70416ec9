"""The built-in handler: upsert each entity's newest payload into entity_projection.

An event whose type ends in `_deleted` or `.deleted` (a Debezium delete, a CloudEvents
`com.example.customer.deleted`) marks the row deleted rather than removing it: the row
keeps the delete's version, so an older change arriving late cannot resurrect it.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cronstream.events import exact
from cronstream.events.envelope import SYNC_REQUIRED, Event
from cronstream.handlers.registry import Registry
from cronstream.handlers.sql import query


def newest_per_key(events: Sequence[Event]) -> list[Event]:
    """One event per (entity, key): the one the projection would keep.

    Postgres refuses an upsert that touches one row twice, and ordering here by
    the same rule as the SQL keeps the result independent of batch boundaries, as long
    as a key's events all carry a version or none do (the rule is not transitive across
    the two kinds; README "External change events" asks for one kind per entity).
    """
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


async def project(events: Sequence[Event], connection: asyncpg.Connection) -> None:
    rows = newest_per_key(events)
    await connection.execute(
        query("projection_upsert"),
        [e.entity for e in rows],
        [e.key for e in rows],
        [e.version for e in rows],
        [e.occurred_at for e in rows],
        [exact.dumps(e.payload) for e in rows],  # numeric columns' digits kept
        [e.id for e in rows],
        [e.source for e in rows],
        [is_delete(e) for e in rows],
    )


def is_delete(event: Event) -> bool:
    return event.type.endswith(("_deleted", ".deleted"))


def register(registry: Registry) -> None:
    """The projection applies sync_required events, and external change events of types
    with no handler of their own."""
    registry.register(SYNC_REQUIRED, project)
    registry.external_fallback = project
