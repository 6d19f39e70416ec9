"""No Docker engine runs the tests, so compose.yaml is checked against the code instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cronstream.config.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
CLI_ONLY_VARIABLES = {"CRONSTREAM_LOG_LEVEL", "CRONSTREAM_LOG_FORMAT"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def pinned_kafka_version() -> str:
    pom = (ROOT / "scripts/kafka/pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match
    return match.group(1)


def test_services_are_the_pipeline() -> None:
    assert set(compose()["services"]) == {"kafka", "postgres", "migrate", "scheduler", "worker"}


def test_kafka_is_the_same_release_as_the_local_scripts() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{pinned_kafka_version()}"
    assert "127.0.0.1:9092:9092" in kafka["ports"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_postgres_port_and_credentials_match_the_project_url() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert "127.0.0.1:5432:5432" in postgres["ports"]
    url = urlsplit(services["worker"]["environment"]["CRONSTREAM_DATABASE_URL"])
    env = postgres["environment"]
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.path) == (
        env["POSTGRES_USER"],
        env["POSTGRES_PASSWORD"],
        f"/{env['POSTGRES_DB']}",
    )


def test_ports_are_published_on_loopback_only() -> None:
    """Kafka has no authentication and Postgres a well-known password: another machine
    on the network must reach neither."""
    published = {name: service.get("ports", []) for name, service in compose()["services"].items()}
    assert published["kafka"] and published["postgres"]
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_project_services_use_real_settings_and_the_internal_listener() -> None:
    services = compose()["services"]
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("migrate", "scheduler", "worker"):
        service = services[name]
        assert service["build"] == "."
        unknown = set(service["environment"]) - fields - CLI_ONLY_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        assert f"//{service['environment']['CRONSTREAM_KAFKA_BOOTSTRAP']}" in advertised
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
