"""A Kafka broker of one test's own (scripts/kafka.sh on free ports, its data in the test's
tmp_path), for tests that stop and start a broker: the shared one is never touched.

Its jars come from the shared cache (CRONSTREAM_CACHE_DIR, else .cache), linked into the
test's own cache folder, so only a machine without them fetches them (Maven).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.http_helpers import free_port
from tests.integration.workers import ROOT


class PrivateBroker:
    def __init__(self, cache: Path) -> None:
        self.port = free_port()
        self.env = os.environ | {
            "CRONSTREAM_KAFKA_PORT": str(self.port),
            "CRONSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
            "CRONSTREAM_CACHE_DIR": str(cache),
            "CRONSTREAM_KAFKA_HEAP": "256m",
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "kafka.sh"), action],
            env=self.env,
            check=True,
            timeout=180,
            capture_output=True,
        )

    def up(self) -> None:
        self._script("up")

    def down(self) -> None:
        self._script("down")


@contextmanager
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker started for the block and stopped after it."""
    if shutil.which("java") is None:
        pytest.skip("a private broker needs java (scripts/kafka.sh)")
    shared = Path(os.environ.get("CRONSTREAM_CACHE_DIR", ROOT / ".cache"))
    cache = tmp_path / "cache"
    cache.mkdir()
    for libs in shared.glob("kafka-*-libs"):
        (cache / libs.name).symlink_to(libs.resolve())
    broker = PrivateBroker(cache)
    broker.up()
    try:
        yield broker
    finally:
        broker.down()
