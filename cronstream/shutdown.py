"""A hard deadline for graceful shutdown: once started, the process exits in time."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def start_watchdog(seconds: float) -> None:
    """Exit with status 1 if the process is still alive `seconds` from now.

    A thread, not a task: it fires even when the event loop is stuck.
    """
    timer = threading.Timer(seconds, _exit_late, [seconds])
    timer.daemon = True
    timer.start()


def _exit_late(seconds: float) -> None:
    log.error("shutdown took longer than %.0fs; exiting now", seconds)
    logging.shutdown()
    os._exit(1)
