"""Graceful shutdown: SIGINT/SIGTERM set a command's `stopping` event, and a hard
deadline makes sure the process exits in time even so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel a helper task and wait until it has ended; its cancellation is expected."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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


def stop_on_signals(
    stopping: asyncio.Event, grace: float, doing: str, also: Callable[[], object] | None = None
) -> None:
    """On the first SIGINT or SIGTERM in the running loop: say so, set `stopping`, call
    `also`, and exit the process `grace` seconds later should it still be alive."""

    def on_signal(signum: signal.Signals) -> None:
        if stopping.is_set():
            return
        log.info("%s received: %s, exiting within %.0fs", signum.name, doing, grace)
        start_watchdog(grace)
        stopping.set()
        if also is not None:
            also()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
