"""Kafka Connect for a test module: CRONSTREAM_CONNECT_URL's, or one started with
scripts/connect.sh (on CRONSTREAM_CONNECT_PORT) and stopped after the module."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.services import Services
from tests.integration.workers import ROOT


@dataclass(frozen=True)
class Connect:
    url: str
    pid: int | None  # the JVM's pid when this module started it, for its peak RSS


def _connect_script(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "connect.sh"), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # the first start fetches the jars with mvn
        check=False,
    )


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), in MB; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@pytest.fixture(scope="module")
def connect(services: Services) -> Iterator[Connect]:
    """Kafka Connect's REST URL: CRONSTREAM_CONNECT_URL's, or one started for this module."""
    given = os.environ.get("CRONSTREAM_CONNECT_URL")
    if given:
        yield Connect(given.rstrip("/"), None)
        return
    env = os.environ | {"CRONSTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap}
    port = env.get("CRONSTREAM_CONNECT_PORT", "8083")
    began = time.monotonic()
    started = _connect_script("status", env).returncode != 0
    if started:
        up = _connect_script("up", env)
        if up.returncode != 0:
            pytest.fail(f"scripts/connect.sh up failed: {up.stderr.strip()}", pytrace=False)
    home = Path(env.get("CRONSTREAM_CACHE_DIR", ROOT / ".cache")) / "connect"
    pid = int((home / f"connect-{port}.pid").read_text())
    ready = time.monotonic()
    try:
        yield Connect(f"http://127.0.0.1:{port}", pid)
    finally:
        rss = peak_rss_mb(pid)
        tests_s = time.monotonic() - ready
        print(
            f"\nConnect up in {ready - began:.1f}s, Debezium tests {tests_s:.1f}s, "
            f"Connect peak RSS {'unknown' if rss is None else f'{rss:.0f} MB'}"
        )
        if started:
            _connect_script("down", env)
