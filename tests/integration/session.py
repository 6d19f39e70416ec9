"""What this test session owns in the shared services: a token in every name it makes,
its template database, and databases cloned from it.

Helpers for fixtures and tests alike (conftest.py holds the fixtures themselves).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from cronstream.pg import migrate

# Two test sessions may share the services (two checkouts, say): each has its own
# template, and deletes only the topics whose names carry its own token.
SESSION = uuid.uuid4().hex[:8]
TEMPLATE = f"cronstream_template_{SESSION}"


def unique_name(prefix: str) -> str:
    """A name for a topic, or for what makes topics, that only this session uses."""
    return f"{prefix}{SESSION}_{uuid.uuid4().hex[:8]}"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def build_template(admin_url: str) -> None:
    await drop_database(admin_url, TEMPLATE)
    await admin(admin_url, f"CREATE DATABASE {TEMPLATE}")
    template = await asyncpg.connect(with_database(admin_url, TEMPLATE))
    try:
        await migrate.migrate(template)
    finally:
        await template.close()


async def admin(url: str, statement: str) -> None:
    # A connection per statement: tests may restart Postgres in between.
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def drop_database(url: str, name: str) -> None:
    """Drop a test database that our own role's processes may still be using.

    Not `WITH (FORCE)`: that refuses outright when an autovacuum worker happens to be in
    the database, since our role may not signal it. A plain DROP cancels autovacuum
    itself; we end our own sessions and retry while any is still going away.
    """
    deadline = asyncio.get_running_loop().time() + 30
    admin = await asyncpg.connect(url)
    try:
        while True:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND usename = current_user",
                name,
            )
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name}")
                return
            except asyncpg.ObjectInUseError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


@asynccontextmanager
async def empty_database(admin_url: str) -> AsyncIterator[str]:
    """A database of its own for the block, not migrated (for `cronstream migrate` to do
    that); its URL. Dropped after the block."""
    name = f"w_{uuid.uuid4().hex[:12]}"
    await admin(admin_url, f"CREATE DATABASE {name}")
    try:
        yield with_database(admin_url, name)
    finally:
        await drop_database(admin_url, name)
