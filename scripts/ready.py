"""Wait until a service just started is ready, or give up.

usage: ready.py kafka BOOTSTRAP PIDFILE TIMEOUT_SECONDS
       ready.py connect URL PIDFILE TIMEOUT_SECONDS
Ready means, for kafka, that the broker answers a metadata request; for connect, that
Kafka Connect's REST API lists the Debezium Postgres connector: not merely an open port.
Exits 0 when ready, 1 when the deadline passes or the service's process died.
"""

import asyncio
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"


def alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def kafka_answers(bootstrap: str) -> bool:
    async def describe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    try:
        asyncio.run(describe())
    except Exception:
        return False  # not listening yet, or still starting
    return True


def connect_lists_plugin(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/connector-plugins", timeout=3) as response:
            plugins = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return False  # not listening yet, or still starting
    return any(isinstance(p, dict) and p.get("class") == PLUGIN for p in plugins)


PROBES: dict[str, Callable[[str], bool]] = {"kafka": kafka_answers, "connect": connect_lists_plugin}


def main(service: str, target: str, pidfile: Path, seconds: float) -> int:
    ready = PROBES[service]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pidfile):
            print(f"{service}: the process exited during start-up", file=sys.stderr)
            return 1
        if ready(target):
            return 0
        time.sleep(0.5)
    print(f"{service}: {target} was not ready within {seconds:g}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    # Connection refusals while the broker boots are expected; keep them off the terminal.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])))
