"""The composition root: settings and handlers in, a running worker or scheduler out.

`cronstream worker`, `scheduler`, `run` and `replay` call these, and so may a program
of yours that embeds cronstream (`cronstream.run_worker`, `cronstream.run_scheduler`).
Both block until SIGINT or SIGTERM and then return: they are a program's main loop,
not coroutines, because the faust engine must own its event loop. Call them from the
main thread (signal handlers are installed there), outside any running event loop.
Logging is left as the program configured it (the CLI configures it with
--log-level and --log-format).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from pydantic import ValidationError

from cronstream.config.settings import Settings, SettingsError, env_var
from cronstream.errors import problems
from cronstream.handlers import projection
from cronstream.handlers.registry import Registry, load_modules
from cronstream.kafka import health
from cronstream.runtime import shutdown
from cronstream.schedulers.service import Scheduler
from cronstream.streams import worker
from cronstream.web import access, app

log = logging.getLogger(__name__)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (CRONSTREAM_*) and `overrides`; a SettingsError
    naming each bad variable, never its value, when one is invalid."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # the fields, by name
    except ValidationError as error:
        found = problems(error)
        raise SettingsError(
            "; ".join(
                (f"{env_var(field.split('.')[0])}: " if field else "") + message
                for field, message in found
            )
        ) from None


def build_registry(modules: Iterable[str], registry: Registry | None = None) -> Registry:
    """`registry` (a new one if None) with the built-in projection and the handlers of
    `modules`, each a module with a register(registry) function."""
    registry = registry if registry is not None else Registry()
    projection.register(registry)
    load_modules(registry, modules)
    return registry


def http_surface(settings: Settings, scheduler: Scheduler | None = None) -> worker.Serve:
    """The HTTP surface (cronstream/web/app.py) beside a worker's engine, given its
    readiness; with `scheduler` (`cronstream run`), its /readyz reflects that too.

    Settings that would expose it are refused here, before anything starts."""
    access.check_exposure(settings)
    if scheduler is None:
        return lambda readiness: app.Surface(settings, {"engine": readiness})
    checks = {"scheduler": scheduler.readiness}
    return lambda readiness: app.Surface(
        settings, {"engine": readiness, **checks}, role=scheduler.role
    )


def run_worker(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    handlers: Iterable[str] = (),
    with_scheduler: bool = False,
) -> None:
    """Consume `settings.input_topics` and apply them exactly once until SIGINT/SIGTERM.

    `settings`: None reads the environment (CRONSTREAM_*). `registry`: handlers you
    registered in code; the built-in projection is added to it, then the handler
    modules of `settings.handlers` and `handlers`. The HTTP surface serves on
    settings.http_host:http_port (0 turns it off). `with_scheduler` runs the
    scheduler of `settings.jobs_file` and the cron_jobs table in the same process, as
    `cronstream run` does.
    """
    settings = settings if settings is not None else load_settings()
    # The jobs file first: a bad one ends the call before anything connects.
    scheduler = Scheduler(settings, settings.jobs_file) if with_scheduler else None
    registry = build_registry([*settings.handlers, *handlers], registry)
    log.info(
        "worker starting",
        extra={
            "engine": settings.engine,
            "topics": settings.input_topics,
            "group": settings.consumer_group,
            "handled_types": registry.types(),
        },
    )
    companion = scheduler.run if scheduler is not None else None
    serve = http_surface(settings, scheduler)
    worker.run_worker(settings, registry, serve=serve, companion=companion)


def run_scheduler(settings: Settings | None = None) -> None:
    """Run the cron jobs of `settings.jobs_file` and the cron_jobs table until
    SIGINT/SIGTERM: lead or stand by, scan Postgres, emit sync_required events.

    `settings`: None reads the environment (CRONSTREAM_*). /healthz, /readyz and /metrics
    on settings.http_host:scheduler_http_port (0 turns them off); a port in use raises
    PortInUse, an error retrying cannot mend SchedulerFailed.
    """
    settings = settings if settings is not None else load_settings()
    access.check_exposure(settings, "scheduler_http_port")
    scheduler = Scheduler(settings, settings.jobs_file)

    async def main() -> None:
        surface = app.Surface.probes_only(settings, scheduler.readiness, scheduler.role)
        await surface.start()
        grace = settings.shutdown_timeout
        shutdown.stop_on_signals(scheduler.stopping, grace, "releasing leadership")
        watching = asyncio.create_task(health.watch(settings.kafka_bootstrap))
        try:
            await scheduler.run()
        finally:
            await shutdown.cancel_and_wait(watching)
            await surface.stop()

    asyncio.run(main())
    log.info("scheduler stopped", extra={"node": scheduler.node})
