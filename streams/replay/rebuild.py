"""Rebuild mode: a schema of its own, apart from the live tables, and each handler call
routed into it through the transaction's `search_path`.

A rebuild's schema holds empty copies (`LIKE ... INCLUDING ALL`) of the live tables it
names. It is refused when it is on the live search_path, when its copies lack columns
the live tables gained since, when the consumer's checkpoints went into another schema,
and while another consumer's running replay writes into it. Its dead letters go to
topics of its own, never to the live `<topic>.dlq`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from cronstream.config.settings import Settings
from cronstream.events.envelope import Event
from cronstream.handlers.registry import Handler, Router
from cronstream.runtime.names import quote
from cronstream.runtime.untrusted import shown
from cronstream.streams.replay.request import ReplayError, Request, schema_for
from cronstream.streams.sql import query


async def check_schema(connection: asyncpg.Connection, schema: str, like: Sequence[str]) -> None:
    """Refuse a rebuild schema whose tables are live ones: it must be a schema apart."""
    live = await connection.fetchval(query("replay_live_schemas"))
    if schema in live:
        raise ReplayError(
            f"--schema '{shown(schema)}' is on the live search_path ({', '.join(live)}): "
            "pick a schema of its own"
        )
    for table in like:
        home = await connection.fetchval(query("replay_table_schema"), quote(table))
        if home is None:
            raise ReplayError(f"--like '{shown(table)}': no such table in the live schema")
        if home == schema:
            raise ReplayError(f"--like '{shown(table)}' is in --schema {schema} itself")
        copy = f"{quote(schema)}.{quote(table.split('.')[-1])}"
        missing = await connection.fetchval(query("replay_missing_columns"), quote(table), copy)
        if missing:
            raise ReplayError(
                f"{schema}.{table.split('.')[-1]} lacks column(s) {', '.join(missing)} of the "
                f"live {table} (migrated since this rebuild began): drop schema {schema}, or "
                "give another --schema, and rebuild from the start"
            )


# Kafka's longest topic name.
MAX_TOPIC_CHARS = 249


def rebuild_dlq_topic(settings: Settings, consumer: str) -> Callable[[str], str]:
    """A rebuild's dead-letter topic of each topic: `<topic>.rebuild.<token><dlq suffix>`,
    the token being the consumer's default schema name (`schema_for`: its name made
    `[a-z0-9_]`, a hash of it after), so two consumers never share one and it is a
    valid topic name whatever the consumer's name."""
    token = schema_for(consumer)
    return lambda topic: f"{topic}.rebuild.{token}{settings.dlq_suffix}"


def check_dlq_topic(settings: Settings, request: Request) -> None:
    """Refuse a rebuild whose dead-letter topic Kafka cannot name, or that a live
    worker reads or dead-letters into (only an input topic named to look like one)."""
    consumer, topic = request.asked.consumer, request.asked.topic
    assert consumer is not None, "rebuild mode"
    dlq = rebuild_dlq_topic(settings, consumer)(topic)
    if len(dlq) > MAX_TOPIC_CHARS:
        raise ReplayError(
            f"--topic: the rebuild's dead-letter topic {dlq[:60]}... would be {len(dlq)} "
            f"characters, Kafka's limit is {MAX_TOPIC_CHARS}"
        )
    live = settings.input_topics
    if dlq in live or dlq in map(settings.dlq_topic, live):
        raise ReplayError(
            f"--consumer '{shown(consumer)}': the rebuild's dead-letter topic {dlq} is a live "
            "topic: give another --consumer"
        )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


async def check_owner(connection: asyncpg.Connection, request: Request, checkpointed: bool) -> None:
    """Refuse a rebuild whose consumer's checkpoints belong to another schema (resuming
    would skip what went there), or whose schema another consumer's replay writes into."""
    schema, consumer = request.schema, request.asked.consumer
    assert schema is not None and consumer is not None, "rebuild mode"
    last = await connection.fetchrow(query("replay_last_rebuild"), consumer, request.asked.topic)
    if checkpointed and last is not None and last["schema"] != schema:
        theirs = shown(last["schema"])
        raise ReplayError(
            f"--consumer '{shown(consumer)}' has checkpoints from its rebuild into schema "
            f"{theirs} (replay {last['id']}, started {_when(last['started_at'])}): give "
            f"--schema {theirs} to go on there, or another --consumer to rebuild from the start"
        )
    await refuse_held(connection, schema, consumer)


async def refuse_held(connection: asyncpg.Connection, schema: str, consumer: str) -> None:
    """Refuse a schema that a running replay of another consumer writes into: two
    rebuilds there would mix. A row left 'running' by a process that died holds nothing."""
    holder = await connection.fetchrow(query("replay_holder"), schema, consumer)
    if holder is not None:
        raise ReplayError(
            f"--schema {schema} is in use by replay {holder['id']} of consumer "
            f"'{shown(holder['consumer'])}' (started {_when(holder['started_at'])} by "
            f"{shown(holder['started_by'])}), still running: wait for it to end or stop it, "
            "or give another --schema"
        )


async def prepare_schema(connection: asyncpg.Connection, schema: str, like: Sequence[str]) -> None:
    """The rebuild schema with empty copies of the live tables, if not there already."""
    # Identifiers cannot be parameters; both were checked as plain identifiers.
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    for table in like:
        target = f"{quote(schema)}.{quote(table.split('.')[-1])}"
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {target} (LIKE {quote(table)} INCLUDING ALL)"
        )


def in_schema(route: Router, schema: str) -> Router:
    """The same routing, each handler call running with `search_path` set to `schema`.

    Set just before the call and restored just after it, inside the savepoint the
    applier opens per attempt; a failed call rolls the savepoint back, which undoes the
    set_config too. A handler touching a table not created in `schema` fails rather
    than writing into the live tables.
    """
    path = quote(schema)
    live: list[str] = []
    wrapped: dict[int, Handler] = {}

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def in_rebuild_schema(
            events: Sequence[Event], connection: asyncpg.Connection
        ) -> None:
            if not live:  # the session's path, the same for every call: read once
                live.append(await connection.fetchval(query("replay_search_path")))
            await connection.fetchval(query("replay_set_search_path"), path)
            await handler(events, connection)
            await connection.fetchval(query("replay_set_search_path"), live[0])

        return in_rebuild_schema

    def route_in_schema(topic: str, event_type: str) -> Handler | None:
        handler = route(topic, event_type)
        if handler is None:
            return None
        if id(handler) not in wrapped:
            wrapped[id(handler)] = wrap(handler)
        return wrapped[id(handler)]

    return route_in_schema
