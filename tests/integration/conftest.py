"""Fixtures for tests against real Kafka and Postgres.

Each test gets its own database, cloned from a migrated template, and its own topic
names, so tests never see each other's data and run in any order.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from cronstream.pg import migrate
from tests.integration.handlers_under_test import COUNTS_TABLE
from tests.integration.services import HOW_TO_START, Services, find

# Two test sessions may share the services (two checkouts, say): each has its own
# template, and deletes only the topics whose names carry its own token.
SESSION = uuid.uuid4().hex[:8]
TEMPLATE = f"cronstream_template_{SESSION}"


def unique_name(prefix: str) -> str:
    """A name for a topic, or for what makes topics, that only this session uses."""
    return f"{prefix}{SESSION}_{uuid.uuid4().hex[:8]}"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _build_template(admin_url: str) -> None:
    await _drop_database(admin_url, TEMPLATE)
    await _admin(admin_url, f"CREATE DATABASE {TEMPLATE}")
    template = await asyncpg.connect(with_database(admin_url, TEMPLATE))
    try:
        await migrate.migrate(template)
    finally:
        await template.close()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with find() as found:
        if found is None:
            pytest.fail(HOW_TO_START, pytrace=False)
        asyncio.run(_build_template(found.database_url))
        admin_settings = Settings(
            kafka_bootstrap=found.kafka_bootstrap, database_url=found.database_url
        )
        yield found
        asyncio.run(_drop_database(found.database_url, TEMPLATE))
        asyncio.run(_delete_session_topics(admin_settings))


async def _delete_session_topics(settings: Settings) -> None:
    """Delete the topics this session's tests made: a session makes hundreds, and a
    broker that keeps thousands of partitions runs out of its 512 MB heap."""
    try:
        async with clients.started(clients.Admin(settings)) as admin:
            made = sorted(t for t in await admin.client.list_topics() if SESSION in t)
            for begin in range(0, len(made), 200):
                await admin.client.delete_topics(made[begin : begin + 200])
    except KafkaError as error:  # a broker a test left down: nothing to clean
        print(f"\nthe topics of this session were not deleted: {error!r}")


@pytest.fixture
async def database_url(services: Services) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await _admin(services.database_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_database(services.database_url, name)
    await _drop_database(services.database_url, name)


async def _admin(url: str, statement: str) -> None:
    # A connection per statement: tests may restart Postgres in between.
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _drop_database(url: str, name: str) -> None:
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


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database, with the counting handler's table."""
    connection = await asyncpg.connect(database_url)
    await connection.execute(COUNTS_TABLE)
    yield connection
    await connection.close()


@pytest.fixture(params=["batch", "faust"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each worker test runs on both engines: they must keep the same promises."""
    return str(request.param)


@pytest.fixture
def topic() -> str:
    return unique_name("test.")


@pytest.fixture
def settings(services: Services, database_url: str, topic: str) -> Settings:
    return Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        database_url=database_url,
        sync_topic=topic,
        consumer_group=f"group.{topic}",
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """The environment for running `cronstream` as a subprocess against this test's services."""
    return environment(settings)


def environment(settings: Settings) -> dict[str, str]:
    """`cli_env` for any settings (module-scoped fixtures build their own)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRONSTREAM_")}
    env |= {
        "CRONSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CRONSTREAM_DATABASE_URL": settings.database_dsn,
        "CRONSTREAM_SYNC_TOPIC": settings.sync_topic,
        "CRONSTREAM_CONSUMER_GROUP": settings.consumer_group,
        "CRONSTREAM_LOG_FORMAT": "json",
        # Off unless a test picks a free port, so parallel processes never fight over 8080.
        "CRONSTREAM_HTTP_PORT": "0",
    }
    return env


def copy_migrations(directory: Path) -> Path:
    """The packaged migrations copied into a new `directory`, for a test to add to or edit."""
    directory.mkdir()
    for entry in migrate.PACKAGED_MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            (directory / entry.name).write_bytes(entry.read_bytes())
    return directory


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `cronstream` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cronstream", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
