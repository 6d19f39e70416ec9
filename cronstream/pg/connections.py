"""Postgres connections from Settings, with errors that never show the password."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from cronstream.config.redact import scrub
from cronstream.config.settings import Settings
from cronstream.errors import START_SERVICES, CronstreamError

CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DatabaseUnavailable(CronstreamError):
    """Postgres could not be reached or refused the credentials."""

    retriable = True

    def cli_line(self) -> str:
        return f"{self} ({START_SERVICES})"


def unavailable(settings: Settings, error: BaseException) -> DatabaseUnavailable:
    """A DatabaseUnavailable naming the server by its redacted URL; never raises.

    The driver's message is scrubbed too: some quote parts of the URL they misread.
    """
    database = settings.database
    message = scrub(str(error) or type(error).__name__, database.dsn)
    return DatabaseUnavailable(f"cannot connect to {database.redacted}: {message}")


def session_settings(settings: Settings, application_name: str) -> dict[str, str]:
    """Bounds on a session that reads or writes tables others may lock: no lock or
    statement waits forever; `application_name` tells the session apart."""
    database = settings.database
    return {
        "lock_timeout": f"{int(database.lock_timeout * 1000)}ms",
        "statement_timeout": f"{int(database.statement_timeout * 1000)}ms",
        "application_name": application_name[:63],  # Postgres keeps 63 bytes
    }


async def connect(
    settings: Settings, server_settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    database = settings.database
    try:
        return await asyncpg.connect(
            database.dsn,
            timeout=database.connect_timeout,
            server_settings=server_settings,
        )
    except (*CONNECT_ERRORS, ValueError) as error:  # ValueError: a URL the driver misreads
        raise unavailable(settings, error) from None


@asynccontextmanager
async def connection(
    settings: Settings, server_settings: dict[str, str] | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the block, closed after it whatever happens; the goodbye gets a
    second, so a server gone silent cannot hold up the exit (or a 3 s readiness check)."""
    opened = await connect(settings, server_settings)
    try:
        yield opened
    finally:
        await opened.close(timeout=1)


async def pool(
    settings: Settings,
    *,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    try:
        created = await asyncpg.create_pool(
            settings.database.dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=server_settings,
        )
    except (*CONNECT_ERRORS, ValueError) as error:  # ValueError: a URL the driver misreads
        raise unavailable(settings, error) from None
    assert created is not None  # create_pool returns None only when awaited lazily
    return created
