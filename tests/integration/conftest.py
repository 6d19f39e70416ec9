"""Fixtures for tests against real Kafka and Postgres.

Each test gets its own database, cloned from a migrated template, and its own topic
names, so tests never see each other's data and run in any order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.kafka import clients
from tests.integration.commands import environment
from tests.integration.handlers_under_test import COUNTS_TABLE
from tests.integration.services import HOW_TO_START, Services, find
from tests.integration.session import (
    SESSION,
    TEMPLATE,
    admin,
    build_template,
    drop_database,
    unique_name,
    with_database,
)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with find() as found:
        if found is None:
            pytest.fail(HOW_TO_START, pytrace=False)
        asyncio.run(build_template(found.database_url))
        admin_settings = Settings(
            kafka_bootstrap=found.kafka_bootstrap, database_url=found.database_url
        )
        yield found
        asyncio.run(drop_database(found.database_url, TEMPLATE))
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
    await admin(services.database_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_database(services.database_url, name)
    await drop_database(services.database_url, name)


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
