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


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's environment without its CRONSTREAM_ settings, plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CRONSTREAM_")} | extra


def make(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({}, f"make -C {ROOT} psql SQL="),
        ({"CRONSTREAM_PG_PORT": "15432"}, f"CRONSTREAM_PG_PORT=15432 make -C {ROOT} psql SQL="),
        (
            {"CRONSTREAM_PG_PASSWORD": "hunter2", "CRONSTREAM_CACHE_DIR": "/srv/c"},
            f"CRONSTREAM_CACHE_DIR=/srv/c make -C {ROOT} psql SQL=",
        ),
        (
            {"CRONSTREAM_PG_PORT": "6000", "CRONSTREAM_PG_BIN": "/opt/pg/bin"},
            f"CRONSTREAM_PG_PORT=6000 CRONSTREAM_PG_BIN=/opt/pg/bin make -C {ROOT} psql SQL=",
        ),
        (
            {"CRONSTREAM_DATABASE_URL": "postgresql://app@db/cs?password=hunter2"},
            'psql "$CRONSTREAM_DATABASE_URL" -c ',
        ),
    ],
)
def test_make_run_names_a_psql_command_that_works_in_another_shell(
    env: dict[str, str], hint: str
) -> None:
    """Another shell has none of make's variables: the hint carries what it needs, no password."""
    result = make(clean_env(**env), "--eval", 'print-hint: ; @echo "[$(PSQL_HINT)]"', "print-hint")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"[{hint}]\n"


@pytest.mark.parametrize(
    "env",
    [
        {"CRONSTREAM_PG_PASSWORD": "hunter2"},
        {"CRONSTREAM_DATABASE_URL": "postgresql://app:hunter2@db.example/cs"},
        {"CRONSTREAM_DATABASE_URL": "postgresql://app@db/cs?sslpassword=hunter2"},
    ],
)
def test_make_run_never_prints_the_password(env: dict[str, str]) -> None:
    result = make(clean_env(**env), "-n", "run")
    assert result.returncode == 0, result.stderr
    assert "make -C" in result.stdout or 'psql "$CRONSTREAM_DATABASE_URL"' in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_psql_on_a_stopped_cluster_says_how_to_start_it(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = clean_env(CRONSTREAM_PG_PORT=str(port), CRONSTREAM_CACHE_DIR=str(tmp_path))
    result = script("postgres.sh", env, "psql", "-c", "SELECT 1")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"error: postgres is not running on 127.0.0.1:{port}: start it with 'make services'"
    ]


def test_postgres_bin_without_the_server_programs_is_one_line(tmp_path: Path) -> None:
    env = clean_env(CRONSTREAM_PG_BIN=str(tmp_path), CRONSTREAM_CACHE_DIR=str(tmp_path))
    result = script("postgres.sh", env, "up")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"error: CRONSTREAM_PG_BIN={tmp_path} has no initdb and pg_ctl: point it at the "
        "folder that has them, or unset it"
    ]
