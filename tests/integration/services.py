"""Where the integration tests find real Kafka and Postgres.

1. CRONSTREAM_KAFKA_BOOTSTRAP and CRONSTREAM_DATABASE_URL, when set (`make test` sets
   them to the services it starts);
2. otherwise, when a Docker engine answers, testcontainers;
3. otherwise a failure naming the command that starts them. Never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"

HOW_TO_START = (
    "no Kafka/Postgres for the integration tests: run `make test`, or start them with "
    "`make services` and export CRONSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092 "
    "CRONSTREAM_DATABASE_URL=postgresql://cronstream:cronstream@127.0.0.1:5432/cronstream"
)


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    database_url: str


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@contextmanager
def containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        postgres = stack.enter_context(
            PostgresContainer(POSTGRES_IMAGE, driver=None, username="cronstream")
        )
        yield Services(kafka.get_bootstrap_server(), postgres.get_connection_url())


@contextmanager
def find() -> Iterator[Services | None]:
    bootstrap = os.environ.get("CRONSTREAM_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("CRONSTREAM_DATABASE_URL")
    if bootstrap and database_url:
        yield Services(bootstrap, database_url)
    elif docker_available():
        with containers() as found:
            yield found
    else:
        yield None
