"""`cronstream worker`, `scheduler` and `run`: the long-running processes."""

from __future__ import annotations

from typing import Annotated

import typer

from cronstream.cli import compose
from cronstream.cli.options import (
    EngineOption,
    ExternalTopicsOption,
    HandlersOption,
    JobsFileOption,
    env_option,
    settings_of,
)


def worker_command(
    ctx: typer.Context,
    handler_modules: HandlersOption = None,
    external_topics: ExternalTopicsOption = None,
    batch_size: Annotated[
        int | None,
        env_option(
            "batch_size",
            min=1,
            max=100_000,
            help="Most records in one batch, i.e. one transaction. (default: 2000)",
        ),
    ] = None,
    engine: EngineOption = None,
    processes: Annotated[
        str | None,
        env_option(
            "worker_processes",
            "--processes",
            metavar="N|auto",
            help="Worker processes to run, a number or `auto` (one per core this process "
            "may use), under one supervisor that serves the one HTTP surface. (default: 1)",
        ),
    ] = None,
) -> None:
    """Consume sync_required and external change topics and apply them exactly once.

    Each batch's effects and the Kafka offsets they came from commit in one Postgres
    transaction; Kafka offsets are committed only after that. Undecodable events, events
    with no handler and events whose handler keeps failing or hanging go to
    `<topic>.dlq`, once each, and the rest of the batch is applied. While Postgres or
    Kafka is down the batch is retried with backoff. Run more workers to share the
    partitions. SIGINT/SIGTERM drain the in-flight batch and exit within
    CRONSTREAM_SHUTDOWN_TIMEOUT seconds.

    A worker applies on one core. `--processes N` (or `auto`) runs N workers of the
    same group under one supervisor process: it serves HTTP (/readyz ready when every
    worker process is alive and ready, /metrics summed over them), starts a crashed
    one again with backoff, and forwards SIGINT/SIGTERM so all drain (it exits 0 when
    they did). A worker process exiting on a configuration error (exit code 2), or 3
    times within 10 s of its start, stops them all: the supervisor exits non-zero with
    one line saying why. More processes than partitions leave some idle (and /readyz
    at 503). Workers started by hand on one host each need their own
    CRONSTREAM_HTTP_PORT (or 0).

    HTTP on CRONSTREAM_HTTP_HOST:CRONSTREAM_HTTP_PORT (default 127.0.0.1:8080; port 0
    turns it off): /healthz, /readyz, /metrics (Prometheus), POST /events and a status
    page at /. POST /events is closed until CRONSTREAM_INGRESS_TOKEN is set (then it
    needs `Authorization: Bearer <token>`, as / does); an address other than loopback
    needs the token to start.
    """
    settings = settings_of(
        ctx,
        external_topics=external_topics,
        batch_size=batch_size,
        engine=engine,
        worker_processes=processes,
    )
    compose.run_worker(settings, handlers=handler_modules or [])


def scheduler_command(ctx: typer.Context, jobs_file: JobsFileOption = None) -> None:
    """Run cron jobs: scan Postgres and emit sync_required events to Kafka.

    Run as many as you like: one leads (a Postgres advisory lock), the others stand by
    and take over within seconds when it dies. Every tick is claimed in cron_runs, so
    none runs twice. Changes to cron_jobs apply without a restart. SIGINT/SIGTERM let a
    running scan finish its page, release leadership and exit. An error retrying cannot
    mend (a privilege revoked, a table dropped) ends it in one line, exit code 1.

    HTTP on CRONSTREAM_HTTP_HOST:CRONSTREAM_SCHEDULER_HTTP_PORT (default
    127.0.0.1:8081; port 0 turns it off): /healthz, /readyz (200 once Postgres answers;
    the body says "leader" or "standby") and /metrics (Prometheus). An address other
    than loopback needs CRONSTREAM_INGRESS_TOKEN to start.
    """
    compose.run_scheduler(settings_of(ctx, jobs_file=jobs_file))


def run_command(
    ctx: typer.Context,
    jobs_file: JobsFileOption = None,
    handler_modules: HandlersOption = None,
    engine: EngineOption = None,
) -> None:
    """Scheduler and worker in one process, for small deployments and `make run`.

    One process always: CRONSTREAM_WORKER_PROCESSES is ignored here (for more cores run
    `cronstream worker --processes N` beside `cronstream scheduler`).

    Serves the worker's HTTP surface (see `cronstream worker --help`), with the cron and
    scanner metrics of this process's scheduler when it leads; /readyz waits for the
    scheduler too and says "leader" or "standby". If the scheduler fails, the worker
    stops and the command exits 1 with one line saying why.
    """
    settings = settings_of(ctx, jobs_file=jobs_file, engine=engine)
    compose.run_worker(settings, handlers=handler_modules or [], with_scheduler=True)
