"""Wait until Kafka Connect's REST API lists the Debezium Postgres connector, or give up.

usage: ready.py URL PIDFILE TIMEOUT_SECONDS
Exits 0 when ready, 1 when the deadline passes or the Connect process died.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"


def alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def lists_plugin(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/connector-plugins", timeout=3) as response:
            plugins = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return False  # not listening yet, or still starting
    return any(isinstance(p, dict) and p.get("class") == PLUGIN for p in plugins)


def main(url: str, pidfile: Path, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pidfile):
            print("connect: the Connect process exited during start-up", file=sys.stderr)
            return 1
        if lists_plugin(url):
            return 0
        time.sleep(0.5)
    print(
        f"connect: {url}/connector-plugins did not list {PLUGIN} in {seconds:g}s", file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
