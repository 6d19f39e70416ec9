"""No password is ever printed: every DSN form, every command, all of stdout and stderr.

Each database URL points at a host that does not answer, so every command goes down
its error path (a refused setting, a connection error, an outage retried and logged),
which is where a password leaks if anywhere.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.commands import run_cli
from tests.integration.services import Services

PASSWORD = "Kq7vZt2-secret"  # the pieces between special characters are checked too

DSN_FORMS: list[str] = [
    f"postgresql://app:{PASSWORD}@127.0.0.1:1/db",
    f"postgres://app:{PASSWORD}@127.0.0.1:1/db",
    f"postgresql://app@127.0.0.1:1/db?password={PASSWORD}",
    f"postgresql://app@127.0.0.1:1/db?passwor%64={PASSWORD}",
    f"postgresql://app@127.0.0.1:1/db?sslmode=disable&password={PASSWORD}&connect_timeout=2",
    f"host=127.0.0.1 port=1 user=app password={PASSWORD} dbname=db",
    f"host=127.0.0.1 port=1 user=app password='{PASSWORD} x' dbname=db",
    f"postgresql://app:{PASSWORD}@127.0.0.1:1,127.0.0.1:2/db",
    f"postgresql://app:{PASSWORD}@[::1]:1/db",
    "postgresql://app:Kq7vZt2#secret@127.0.0.1:1/db",
    "postgresql://app:Kq7vZt2/secret@127.0.0.1:1/db",
    "postgresql://app:Kq7vZt2?secret@127.0.0.1:1/db",
    "postgresql://app:Kq7vZt2@secret@127.0.0.1:1/db",
    "postgresql://app:Kq7vZt2%23secret@127.0.0.1:1/db",
    "postgresql://app:Kq7vZt2%2Fsecret@127.0.0.1:1,127.0.0.1:2/db?password=Kq7vZt2%23secret",
]

SHORT_COMMANDS: list[list[str]] = [
    ["migrate"],
    ["publish", "--entity", "a", "--key", "1"],
    ["jobs", "list"],
    ["status"],
]

# Run until they report the outage (or exit), then are stopped.
LONG_COMMANDS: list[list[str]] = [["worker"], ["scheduler"]]


@pytest.fixture
def env(services: Services, topic: str) -> dict[str, str]:
    """Real Kafka and this test's topic; no database of its own, none is reachable."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CRONSTREAM_")}
    return inherited | {
        "CRONSTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "CRONSTREAM_SYNC_TOPIC": topic,
        "CRONSTREAM_CONSUMER_GROUP": f"group.{topic}",
        "CRONSTREAM_CONNECT_TIMEOUT": "3",
        "CRONSTREAM_HTTP_PORT": "0",  # parallel runs must not fight over 8080
        "CRONSTREAM_SCHEDULER_HTTP_PORT": "0",  # nor over 8081
    }


def assert_no_secret(output: str) -> None:
    for piece in ["Kq7vZt2", "secret", *re.split(r"[^A-Za-z0-9]+", PASSWORD)]:
        assert piece not in output, f"{piece!r} printed:\n{output}"
    assert "Traceback" not in output, output


def run_until_reported(args: list[str], env: dict[str, str], log: Path) -> str:
    """Start `cronstream args`; once it reported a problem or exited, stop it; its output."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cronstream", *args], env=env, stdout=sink, stderr=sink
        )
        deadline = time.monotonic() + 60
        try:
            while process.poll() is None and time.monotonic() < deadline:
                text = log.read_text(errors="replace")
                if "cannot connect" in text or '"level": "error"' in text:
                    break
                time.sleep(0.1)
            else:
                assert process.poll() is not None, f"no outage reported in 60 s:\n{text}"
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return log.read_text(errors="replace")


@pytest.mark.parametrize("command", SHORT_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("dsn", DSN_FORMS)
def test_short_commands_never_print_the_database_password(
    env: dict[str, str], dsn: str, command: list[str]
) -> None:
    result = run_cli(command, env | {"CRONSTREAM_DATABASE_URL": dsn}, timeout=60)
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize("command", LONG_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("dsn", DSN_FORMS)
def test_services_never_print_the_database_password(
    env: dict[str, str], dsn: str, command: list[str], tmp_path: Path
) -> None:
    output = run_until_reported(command, env | {"CRONSTREAM_DATABASE_URL": dsn}, tmp_path / "log")
    assert_no_secret(output)


@pytest.mark.parametrize("command", [*SHORT_COMMANDS, *LONG_COMMANDS], ids=" ".join)
def test_the_kafka_sasl_password_is_never_printed(
    env: dict[str, str], command: list[str], tmp_path: Path
) -> None:
    sasl = {
        "CRONSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "CRONSTREAM_REQUEST_TIMEOUT": "3",
        "CRONSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CRONSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRONSTREAM_KAFKA_SASL_USERNAME": "app",
        "CRONSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        "CRONSTREAM_DATABASE_URL": f"postgresql://app:{PASSWORD}@127.0.0.1:1/db",
    }
    assert_no_secret(run_until_reported(command, env | sasl, tmp_path / "log"))
