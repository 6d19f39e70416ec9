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
import sys
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Literal

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from cronstream.cli import supervisor
from cronstream.config.settings import Settings, SettingsError, env_var
from cronstream.errors import CronstreamError, problems
from cronstream.handlers import projection
from cronstream.handlers.registry import Registry, load_modules
from cronstream.kafka import health
from cronstream.runtime import logs, shutdown
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

    With `settings.worker_processes` above 1 (and no scheduler) it runs that many worker
    processes under a supervisor (cli/supervisor.py) that serves the HTTP surface; each
    imports the handler modules itself, so `registry` must be None then.
    """
    settings = settings if settings is not None else load_settings()
    if settings.worker_processes > 1:
        if not with_scheduler:
            run_worker_processes(settings, handlers, registry)
            return
        log.warning(
            "`cronstream run` is one process: %s is ignored",
            env_var("worker_processes"),
        )
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


def run_worker_processes(
    settings: Settings, handlers: Iterable[str] = (), registry: Registry | None = None
) -> None:
    """`settings.worker_processes` workers under one supervisor serving the HTTP surface
    (cli/supervisor.py), until SIGINT/SIGTERM; WorkersMisconfigured, WorkersFailed or
    NotDrained when they could not be kept running or did not drain."""
    if registry is not None:
        raise SettingsError(
            f"{env_var('worker_processes')}: handlers registered in code stay in this "
            "process; give handler modules (handlers=, CRONSTREAM_HANDLERS) to run "
            "several worker processes"
        )
    access.check_exposure(settings)
    count = settings.worker_processes
    log.info(
        "worker starting",
        extra={
            "engine": settings.engine,
            "topics": settings.input_topics,
            "group": settings.consumer_group,
            "processes": count,
        },
    )
    processes = supervisor.Supervisor(
        settings, count, run_worker_process, (settings, list(handlers), logs.current())
    )
    processes.run(
        lambda readiness, registry: app.Surface(settings, {"workers": readiness}, metrics=registry)
    )
    log.info("worker stopped", extra={"processes": count})


def run_worker_process(
    number: int,
    reports: Connection,
    supervisor_pid: int,
    settings: Settings,
    handlers: list[str],
    log_setup: tuple[str, Literal["json", "text"]],
) -> None:
    """Worker process `number` of a supervisor (cli/supervisor.py), in a process of its
    own: no HTTP; its readiness and, on an error, its one line go to the supervisor
    before it exits with the error's exit code."""
    logs.configure(*log_setup, fields={"worker_process": number})
    worker_id = f"{settings.worker_id}-{number}" if settings.worker_id else None
    settings = settings.model_copy(
        update={"worker_processes": 1, "http_port": 0, "worker_id": worker_id}
    )
    try:
        registry = build_registry([*settings.handlers, *handlers])
        log.info("worker process starting", extra={"handled_types": registry.types()})

        def report(readiness: worker.Readiness) -> supervisor.Report:
            return supervisor.Report(readiness, reports, supervisor_pid)

        worker.run_worker(settings, registry, serve=report)
        return
    except CronstreamError as error:
        line, code = error.cli_line(), error.exit_code
    except KafkaError as error:
        line, code = f"Kafka: {type(error).__name__}: {error}", 1
    supervisor.report_failure(reports, line)
    log.error("worker process stopped: %s", line)
    sys.exit(code)


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
