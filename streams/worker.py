"""`cronstream worker`: run the chosen engine until SIGINT or SIGTERM, topics created first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from cronstream.config.settings import Settings
from cronstream.errors import CronstreamError
from cronstream.handlers.registry import Registry
from cronstream.kafka import clients
from cronstream.runtime import shutdown
from cronstream.runtime.untrusted import shown
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


class CompanionFailed(CronstreamError):
    """The scheduler beside a worker (`cronstream run`) failed, so the worker stopped:
    half a `run` would look healthy while no job runs."""

    @classmethod
    def of(cls, error: BaseException) -> CompanionFailed:
        if isinstance(error, CronstreamError):
            why = error.cli_line()
        else:
            kind = "Kafka: " if isinstance(error, KafkaError) else ""
            why = f"{kind}{type(error).__name__}: {shown(str(error))}"
        return cls(f"the worker stopped because its scheduler failed: {why}")


def watched(companion: Companion, failed: Callable[[BaseException], None]) -> Companion:
    """`companion`, calling `failed` with its error if it fails (not when cancelled)."""

    async def run() -> None:
        try:
            await companion()
        except Exception as error:
            failed(error)

    return run


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
    there) and is cancelled when the worker stops; if it fails, the worker stops and
    this raises CompanionFailed.
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
    failures: list[BaseException] = []

    def companion_failed(error: BaseException) -> None:
        failures.append(error)
        engine.stopping.set()

    beside = (
        asyncio.create_task(watched(companion, companion_failed)())
        if companion is not None
        else None
    )
    shutdown.stop_on_signals(
        engine.stopping, settings.shutdown_timeout, "draining", beside.cancel if beside else None
    )
    try:
        await engine.run()
    finally:
        if beside is not None:
            await shutdown.cancel_and_wait(beside)
        await surface.stop()
    if failures:
        raise CompanionFailed.of(failures[0])
