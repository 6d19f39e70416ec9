"""The local-service scripts fail with one clear line when a prerequisite is missing.

These run the real scripts but never start a service: each case stops at its check.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_kafka_refuses_a_port_taken_by_something_else(taken_port: int, tmp_path: Path) -> None:
    env = os.environ | {
        "CRONSTREAM_KAFKA_PORT": str(taken_port),
        "CRONSTREAM_CACHE_DIR": str(tmp_path),
    }
    result = script("kafka.sh", env, "up")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: port {taken_port} is taken by another process: stop it, or set "
        "CRONSTREAM_KAFKA_PORT to a free port"
    ]


def test_postgres_refuses_a_port_taken_by_something_else(taken_port: int, tmp_path: Path) -> None:
    env = os.environ | {
        "CRONSTREAM_PG_PORT": str(taken_port),
        "CRONSTREAM_CACHE_DIR": str(tmp_path),
    }
    result = script("postgres.sh", env, "up")
    assert result.returncode != 0
    assert f"error: port {taken_port} is taken by another process" in result.stderr


def test_kafka_without_java_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "dirname", "mkdir", "cat", "rm", "touch", "seq", "sleep"):
        found = subprocess.run(["which", tool], capture_output=True, text=True, check=True)
        (bin_dir / tool).symlink_to(found.stdout.strip())
    env = {
        "PATH": str(bin_dir),
        "CRONSTREAM_KAFKA_PORT": "1",
        "CRONSTREAM_CACHE_DIR": str(tmp_path),
    }
    result = script("kafka.sh", env, "up")
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: java not found: install a JDK 17 or newer")
    )


def test_unknown_action_prints_usage() -> None:
    result = script("services.sh", dict(os.environ), "sideways")
    assert result.returncode != 0
    assert "usage: scripts/services.sh up|down|status" in result.stderr
