"""Debezium Postgres connectors over Kafka Connect's REST API: registered, waited for,
and removed with their replication slots and publications."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from tests.integration.kafka_helpers import wait_for
from tests.integration.session import unique_name

PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"


def connector_config(
    database_url: str,
    slot: str,
    prefix: str,
    tables: list[str],
    schemas: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A Debezium Postgres connector on a database, its tables named schema.table;
    `extra` adds or overrides settings (decimal.handling.mode, ...)."""
    url = urlsplit(database_url)
    enabled = "true" if schemas else "false"
    return {
        "connector.class": PLUGIN,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": url.hostname or "127.0.0.1",
        "database.port": str(url.port or 5432),
        "database.user": url.username or "",
        "database.password": url.password or "",
        "database.dbname": url.path.lstrip("/"),
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": slot,
        # Filtered: the publication lists only our tables, which must exist already.
        "publication.autocreate.mode": "filtered",
        "table.include.list": ",".join(tables),
        "snapshot.mode": "initial",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": enabled,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": enabled,
    } | (extra or {})


async def _rest(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def _config_errors(
    session: aiohttp.ClientSession, connect_url: str, config: dict[str, str]
) -> list[str]:
    """What Connect's validation finds wrong with a config (a failed create may answer
    only with an internal error: Connect 4.1 does when Debezium cannot log in)."""
    _, body = await _rest(
        session, "PUT", f"{connect_url}/connector-plugins/PostgresConnector/config/validate", config
    )
    values = [entry.get("value") or {} for entry in (body or {}).get("configs", [])]
    return [f"{v.get('name')}: {'; '.join(v['errors'])}" for v in values if v.get("errors")]


async def post_connector(connect_url: str, name: str, config: dict[str, str]) -> None:
    """Register a connector; a refusal fails with Connect's reasons."""
    async with aiohttp.ClientSession() as session:
        status, body = await _rest(
            session, "POST", f"{connect_url}/connectors", {"name": name, "config": config}
        )
        if status != 201:
            errors = await _config_errors(session, connect_url, {"name": name, **config})
            raise AssertionError(f"creating connector {name}: HTTP {status} {body}; {errors}")


async def wait_until_running(connect_url: str, name: str, deadline_s: float = 60) -> None:
    """Wait until a connector's task runs; a failed task fails at once, with its trace."""
    async with aiohttp.ClientSession() as session:
        last: Any = None

        async def running() -> bool:
            nonlocal last
            _, last = await _rest(session, "GET", f"{connect_url}/connectors/{name}/status")
            tasks = (last or {}).get("tasks") or []
            failed = [t for t in tasks if t.get("state") == "FAILED"]
            assert not failed, f"connector {name}'s task failed:\n{failed[0].get('trace')}"
            return bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)

        try:
            await wait_for(running, deadline_s, f"connector {name}'s task to run")
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {last}") from None


async def remove_connector(
    connect_url: str, name: str, database_url: str, deadline_s: float = 60
) -> None:
    """Delete a connector, then its replication slot (a database with one cannot be dropped)
    and its publication."""
    async with aiohttp.ClientSession() as session:
        status, body = await _rest(session, "DELETE", f"{connect_url}/connectors/{name}")
        assert status in (204, 404), f"deleting connector {name}: HTTP {status} {body}"

        async def gone() -> bool:
            status, _ = await _rest(session, "GET", f"{connect_url}/connectors/{name}")
            return status == 404

        await wait_for(gone, deadline_s, f"connector {name} to go")
    connection = await asyncpg.connect(database_url)
    try:
        # The task's replication connection may outlive the connector by a moment.
        async def slot_idle() -> bool:
            active = await connection.fetchval(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1", name
            )
            return active is not True

        await wait_for(slot_idle, deadline_s, f"replication slot {name} to be released")
        await connection.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = $1",
            name,
        )
        await connection.execute(f"DROP PUBLICATION IF EXISTS {name}")
    finally:
        await connection.close()


@asynccontextmanager
async def debezium_connector(
    connect_url: str,
    database_url: str,
    tables: list[str],
    schemas: bool = False,
    extra: dict[str, str] | None = None,
) -> AsyncIterator[str]:
    """A running connector on `tables` for the duration; yields its topic prefix."""
    name = unique_name("cs_")  # the connector's, slot's and publication's name
    prefix = f"dbz.{name}"
    config = connector_config(database_url, name, prefix, tables, schemas, extra)
    await post_connector(connect_url, name, config)  # nothing to remove when refused
    try:
        await wait_until_running(connect_url, name)
        yield prefix
    finally:
        await remove_connector(connect_url, name, database_url)
