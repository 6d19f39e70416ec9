"""`cronstream worker`: run the chosen engine until SIGINT or SIGTERM, topics created first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from cronstream import http, kafka, shutdown
from cronstream.handlers.registry import Registry
from cronstream.settings import Settings
from cronstream.streams.batch_engine import BatchEngine

log = logging.getLogger(__name__)

Companion = Callable[[], Coroutine[Any, Any, None]]


def run_worker(settings: Settings, registry: Registry, companion: Companion | None = None) -> None:
    """Run a worker with `settings.engine` until SIGINT or SIGTERM.

    `companion` runs beside it in the same loop (`cronstream run` puts the scheduler
    there) and is cancelled when the worker stops. The HTTP surface (cronstream/http.py)
    serves beside either engine; a port in use raises http.PortInUse before it starts.
    """
    topics = settings.input_topics + [settings.dlq_topic(t) for t in settings.input_topics]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(kafka.ensure_topics(settings, topics))
        if settings.engine == "faust":
            from cronstream.streams import faust_engine  # faust is slow to import; only when chosen

            faust_engine.run_faust_worker(settings, registry, loop, companion)
            return
        loop.run_until_complete(run_batch_engine(settings, registry, companion))
    finally:
        if not loop.is_closed():
            loop.close()


async def run_batch_engine(
    settings: Settings, registry: Registry, companion: Companion | None
) -> None:
    engine = BatchEngine(settings, registry)
    surface = http.Surface(settings, engine.readiness)
    await surface.start()  # before the companion: a port in use ends the command at once
    beside = asyncio.create_task(companion()) if companion is not None else None

    def companion_ended(task: asyncio.Task[None]) -> None:
        # Half a `cronstream run` (a worker without its scheduler) would mislead: stop.
        if not task.cancelled() and task.exception() is not None:
            log.critical("the scheduler failed, stopping: %r", task.exception())
            engine.stopping.set()

    if beside is not None:
        beside.add_done_callback(companion_ended)

    def on_signal(signum: signal.Signals) -> None:
        if engine.stopping.is_set():
            return
        log.info(
            "%s received: draining, exiting within %.0fs", signum.name, settings.shutdown_timeout
        )
        shutdown.start_watchdog(settings.shutdown_timeout)
        engine.stopping.set()
        if beside is not None:
            beside.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await engine.run()
    finally:
        if beside is not None:
            beside.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beside
        await surface.stop()
