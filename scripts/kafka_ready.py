"""Wait until a Kafka broker answers a metadata request, or give up.

usage: kafka_ready.py BOOTSTRAP PIDFILE TIMEOUT_SECONDS
Exits 0 when ready, 1 when the deadline passes or the broker process died.
"""

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient


def broker_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


async def metadata_ok(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def main(bootstrap: str, pidfile: Path, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not broker_alive(pidfile):
            print("kafka: the broker process exited during start-up", file=sys.stderr)
            return 1
        if await metadata_ok(bootstrap):
            return 0
        await asyncio.sleep(0.5)
    return 1


if __name__ == "__main__":
    # Connection refusals while the broker boots are expected; keep them off the terminal.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]))))
