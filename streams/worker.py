"""`cronstream worker`: run the chosen engine until SIGINT or SIGTERM, topics created first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from cronstream.config.settings import Settings
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients
from cronstream.runtime import shutdown
from cronstream.streams.batch_engine import BatchEngine

log = logging.getLogger(__name__)

Companion = Callable[[], Coroutine[Any, Any, None]]
Readiness = Callable[[], str | None]
"""None once the engine is ready (partitions assigned and positioned), else why not.
Both engines provide one (streams/batch_engine.py, streams/faust/engine.py)."""


class Surface(Protocol):
    """What serves beside a worker, started before its engine and stopped after it (the
    CLI passes the HTTP surface of cronstream/web/app.py)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Serve = Callable[[Readiness], Surface]


def run_worker(
    settings: Settings,
    registry: Registry,
    serve: Serve,
    companion: Companion | None = None,
) -> None:
    """Run a worker with `settings.engine` until SIGINT or SIGTERM.

    `serve` makes what serves beside the engine from its readiness (the HTTP surface),
    started before the engine: one that cannot start (a port in use) ends it at once.
    `companion` runs beside it in the same loop (`cronstream run` puts the scheduler
    there) and is cancelled when the worker stops.
    """
    if settings.engine == "faust":
        # Only when chosen: faust is an optional extra, and slow to import. Without it
        # this raises FaustMissing, before anything talks to Kafka.
        from cronstream.streams import faust

    topics = settings.input_topics + [settings.dlq_topic(t) for t in settings.input_topics]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(clients.ensure_topics(settings, topics))
        if settings.engine == "faust":
            faust.run_faust_worker(settings, registry, loop, serve, companion)
            return
        loop.run_until_complete(run_batch_engine(settings, registry, serve, companion))
    finally:
        if not loop.is_closed():
            loop.close()


async def run_batch_engine(
    settings: Settings, registry: Registry, serve: Serve, companion: Companion | None
) -> None:
    engine = BatchEngine(settings, registry)
    surface = serve(engine.readiness)
    await surface.start()  # before the companion: a port in use ends the command at once
    beside = asyncio.create_task(companion()) if companion is not None else None

    def companion_ended(task: asyncio.Task[None]) -> None:
        # Half a `cronstream run` (a worker without its scheduler) would mislead: stop.
        if not task.cancelled() and task.exception() is not None:
            log.critical("the scheduler failed, stopping: %r", task.exception())
            engine.stopping.set()

    if beside is not None:
        beside.add_done_callback(companion_ended)

    shutdown.stop_on_signals(
        engine.stopping, settings.shutdown_timeout, "draining", beside.cancel if beside else None
    )
    try:
        await engine.run()
    finally:
        if beside is not None:
            await shutdown.cancel_and_wait(beside)
        await surface.stop()
