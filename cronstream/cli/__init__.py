"""The `cronstream` command line. Only this module wires the packages together."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, Annotated, Any, Literal, NoReturn

import asyncpg
import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from cronstream import publish
from cronstream.config.settings import Settings, SettingsError, env_var
from cronstream.errors import START_SERVICES, CronstreamError, problems
from cronstream.events.envelope import SYNC_REQUIRED, EnvelopeError, Event, encoded, json_object
from cronstream.handlers import projection
from cronstream.handlers.registry import Registry, load_modules
from cronstream.kafka import clients
from cronstream.pg import migrate
from cronstream.pg.connections import connection
from cronstream.runtime import logs, shutdown
from cronstream.runtime.untrusted import shown
from cronstream.schedulers.cron import CronError, Schedule
from cronstream.schedulers.service import Scheduler
from cronstream.status import collect
from cronstream.streams import replay, worker
from cronstream.web import server


class Commands(TyperGroup):
    """The command group that ends any command failing with a known error in one line."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except CronstreamError as error:
            fail(error.cli_line(), error.exit_code)
        except KafkaError as error:
            fail(f"Kafka: {type(error).__name__}: {error} ({START_SERVICES})")
        except asyncpg.UndefinedTableError as error:
            fail(f"Postgres: {error}: the database is not migrated; run 'cronstream migrate'")
        except asyncpg.InsufficientPrivilegeError as error:
            fail(f"Postgres: {error}")


app = typer.Typer(
    cls=Commands,
    help="cronstream: cron-driven Postgres scanners feeding Kafka, and stream workers that "
    "apply events to Postgres exactly once with checkpoints.\n\n"
    "Every option that has an environment variable names it; all variables start "
    "with CRONSTREAM_.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs to the terminal width
)

MAX_LISTED_ERRORS = 50
REPLAY_LOG_EVERY = 5.0  # seconds between progress lines when stderr is no terminal


def env_option(field: str, *names: str, **options: Any) -> Any:
    """A typer.Option that CRONSTREAM_<FIELD> also sets, and whose --help says so."""
    return typer.Option(*names, envvar=env_var(field), show_envvar=True, **options)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.callback()
def root(
    ctx: typer.Context,
    kafka_bootstrap: Annotated[
        str | None,
        env_option(
            "kafka_bootstrap",
            help="Kafka bootstrap servers, host:port[,host:port]. (default: 127.0.0.1:9092)",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        env_option(
            "database_url",
            help="PostgreSQL URL; its password is never printed. "
            "(default: postgresql://cronstream:***@127.0.0.1:5432/cronstream)",
        ),
    ] = None,
    log_level: Annotated[
        str,
        env_option(
            "log_level",
            help="DEBUG, INFO, WARNING, ERROR or CRITICAL. Unless DEBUG, the Kafka and faust "
            "libraries log only warnings and errors.",
        ),
    ] = "INFO",
    log_format: Annotated[
        Literal["json", "text"],
        env_option("log_format", help="Log line format."),
    ] = "json",
) -> None:
    try:
        logs.configure(log_level, log_format)
    except ValueError as error:
        fail(f"--log-level ({env_var('log_level')}): {error}", 2)
    overrides = {"kafka_bootstrap": kafka_bootstrap, "database_url": database_url}
    ctx.obj = {name: value for name, value in overrides.items() if value is not None}


def settings_of(ctx: typer.Context) -> Settings:
    """Settings from the environment plus the global options; bad values end the command."""
    try:
        return Settings(**ctx.obj)
    except ValidationError as error:
        found = problems(error)
        raise SettingsError(
            "; ".join(
                (f"{env_var(field.split('.')[0])}: " if field else "") + message
                for field, message in found
            )
        ) from None


@app.command("migrate")
def migrate_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the pending migrations; write nothing, take no lock."),
    ] = False,
    migrations_dir: Annotated[
        Path | None,
        env_option(
            "migrations_dir",
            help="Folder of NNNN_name.sql files. "
            "(default: the migrations packaged with cronstream, the repository's migrations/)",
        ),
    ] = None,
) -> None:
    """Apply pending SQL migrations in order, under an advisory lock.

    Applied files are recorded with a checksum; a file changed after it was applied is
    refused. Running it twice changes nothing.
    """
    settings = settings_of(ctx)
    directory = migrations_dir or settings.migrations_dir

    async def apply() -> list[migrate.Migration]:
        async with connection(settings) as db:
            return await migrate.migrate(db, directory, dry_run=dry_run)

    done = asyncio.run(apply())
    if dry_run:
        for migration in done:
            typer.echo(migration.filename)
        typer.echo(f"{len(done)} pending", err=True)
    elif done:
        for migration in done:
            typer.echo(f"applied {migration.filename}")
    else:
        typer.echo("database is up to date")


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The file, or stdin, as bytes: each line's UTF-8 is checked with the line's number."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as error:  # only opening: errors of the caller's block are its own
        fail(f"cannot read {path}: {error.strerror}", 2)
    with stream:
        yield stream


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        console=None,
    )


@app.command("publish")
def publish_command(
    ctx: typer.Context,
    topic: Annotated[
        str | None,
        env_option(
            "sync_topic",
            help="Topic to publish to. (default: cronstream.sync_required)",
        ),
    ] = None,
    event_type: Annotated[
        str, typer.Option("--type", help="Event type of a single event.")
    ] = SYNC_REQUIRED,
    entity: Annotated[str | None, typer.Option(help="Entity of a single event.")] = None,
    key: Annotated[str | None, typer.Option(help="Entity key of a single event.")] = None,
    payload: Annotated[str, typer.Option(help="JSON object: payload of a single event.")] = "{}",
    version: Annotated[
        int | None, typer.Option(min=0, help="Row version of a single event.")
    ] = None,
    trace_id: Annotated[
        str | None, typer.Option(help="Trace id of a single event. (default: a new one)")
    ] = None,
    source: Annotated[
        str, typer.Option(help="Source for events that do not name one.")
    ] = "cronstream-publish",
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="JSONL file of events, one envelope per line ('-' reads stdin). "
            "id, occurred_at, trace_id and source may be omitted.",
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Send the valid lines of a file even when some are invalid."),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar (only on a terminal).")
    ] = True,
) -> None:
    """Publish one event from options, or many from a JSONL file.

    Every line of a file is validated with a worker's rules and encoded before anything
    is sent (events over the producer's 1 MiB request size included); invalid lines are
    reported by number and nothing is sent unless --skip-invalid is given. The producer
    is idempotent with acks=all. An input with no events prints "nothing to publish" and
    connects to nothing.

    Exit codes: 0 all sent (lines skipped with --skip-invalid aside); 1 a send failed;
    2 invalid options or lines, or no valid line at all, --skip-invalid or not.
    """
    settings = settings_of(ctx)
    target = topic or settings.sync_topic
    if file is not None and (entity is not None or key is not None):
        fail("give either --file or --entity/--key, not both", 2)
    if file is None:
        if entity is None or key is None:
            fail("a single event needs --entity and --key (or use --file)", 2)
        record = single_event(event_type, entity, key, payload, version, trace_id, source)
        result = asyncio.run(send_all(settings, target, iter([record]), 1, False))
        report(target, result, skipped=0)
        return
    # Validated records wait here, so what is sent is exactly what was checked.
    with open_input(file) as stream, tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        try:
            checked = publish.check(stream, source, spool, limit=MAX_LISTED_ERRORS)
        except OSError as error:
            fail(f"cannot read {file}: {error.strerror or error}", 2)
        for line_error in checked.errors:
            typer.echo(f"invalid: {line_error}", err=True)
        if checked.invalid > len(checked.errors):
            typer.echo(f"invalid: ... and {checked.invalid - len(checked.errors)} more", err=True)
        if checked.invalid and not skip_invalid:
            fail(
                f"nothing sent: {checked.invalid} invalid line(s); fix them or pass --skip-invalid",
                2,
            )
        if checked.valid == 0:
            if checked.invalid:
                fail(f"nothing sent: all {checked.invalid} line(s) are invalid", 2)
            typer.echo("nothing to publish")
            return
        show = progress and sys.stderr.isatty()
        result = asyncio.run(
            send_all(settings, target, publish.spooled(spool), checked.valid, show)
        )
    report(target, result, skipped=checked.invalid)


def single_event(
    event_type: str,
    entity: str,
    key: str,
    payload: str,
    version: int | None,
    trace_id: str | None,
    source: str,
) -> publish.Record:
    """The record of an event from options, checked by the rules for lines of a file."""
    try:
        body = json_object(payload)  # NaN, 1e400, \u0000 and the like refused, as in files
    except EnvelopeError as error:
        fail(f"--payload must be a JSON object Postgres can store; it {error.reason}", 2)
    try:
        event = Event.new(
            type=event_type,
            source=source,
            entity=entity,
            key=key,
            payload=body,
            version=version,
            trace_id=trace_id,
        )
        return publish.record(1, event, encoded(event))
    except EnvelopeError as error:
        fail(f"invalid event: {error}", 2)


async def send_all(
    settings: Settings,
    topic: str,
    records: Iterator[publish.Record],
    total: int,
    show_progress: bool,
) -> publish.PublishResult:
    await clients.ensure_topics(settings, [topic])
    async with clients.started(clients.producer(settings)) as producer:
        with progress_bar(show_progress) as bar:
            task = bar.add_task("publish", total=total)
            return await publish.send(producer, topic, records, lambda n: bar.advance(task, n))


def report(topic: str, result: publish.PublishResult, skipped: int) -> None:
    partitions = ", ".join(f"{p}: {n}" for p, n in sorted(result.partitions.items()))
    typer.echo(
        f"sent {result.sent}, skipped {skipped}, failed {len(result.failed)}, "
        f"topic {topic}, partitions {{{partitions}}}"
    )
    for failure in result.failed[:MAX_LISTED_ERRORS]:
        typer.echo(f"failed: {failure}", err=True)
    if result.failed:
        raise typer.Exit(1)


def http_surface(settings: Settings) -> worker.Serve:
    """The HTTP surface (cronstream/web/server.py) beside a worker's engine, given its readiness.

    Settings that would expose it are refused here, before anything starts."""
    server.check_exposure(settings)
    return lambda readiness: server.Surface(settings, readiness)


def build_registry(modules: list[str]) -> Registry:
    """The built-in handlers plus those of the user's modules."""
    registry = Registry()
    projection.register(registry)
    load_modules(registry, modules)
    return registry


EngineOption = Annotated[
    Literal["batch", "faust"] | None,
    env_option(
        "engine",
        help="batch: an aiokafka consumer applying whole polls (fastest). faust: the "
        "checkpointed faust agent, as in your own faust app. (default: batch)",
    ),
]


HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Module with a register(registry) function adding handlers; repeatable. "
        f"Also read, comma-separated, from {env_var('handlers')}.",
    ),
]
ExternalTopicsOption = Annotated[
    str | None,
    env_option(
        "external_topics",
        help="External change topics to consume besides sync_required, comma-separated, "
        "each topic[:format[:entity]]: format envelope (default), debezium or "
        "cloudevents; entity overrides the records' own. Unhandled types go to the "
        "projection, and a type ending in _deleted or .deleted marks its row deleted.",
    ),
]


@app.command("worker")
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
) -> None:
    """Consume sync_required and external change topics and apply them exactly once.

    Each batch's effects and the Kafka offsets they came from commit in one Postgres
    transaction; Kafka offsets are committed only after that. Undecodable events, events
    with no handler and events whose handler keeps failing or hanging go to
    `<topic>.dlq`, once each, and the rest of the batch is applied. While Postgres or
    Kafka is down the batch is retried with backoff. Run more workers to share the
    partitions. SIGINT/SIGTERM drain the in-flight batch and exit within
    CRONSTREAM_SHUTDOWN_TIMEOUT seconds.

    HTTP on CRONSTREAM_HTTP_HOST:CRONSTREAM_HTTP_PORT (default 127.0.0.1:8080; port 0
    turns it off): /healthz, /readyz, /metrics (Prometheus), POST /events and a status
    page at /. POST /events is closed until CRONSTREAM_INGRESS_TOKEN is set (then it
    needs `Authorization: Bearer <token>`, as / does); an address other than loopback
    needs the token to start.
    """
    overrides = {"external_topics": external_topics, "batch_size": batch_size, "engine": engine}
    ctx.obj |= {name: value for name, value in overrides.items() if value is not None}
    settings = settings_of(ctx)
    registry = build_registry([*settings.handlers, *(handler_modules or [])])
    logging.getLogger(__name__).info(
        "worker starting",
        extra={
            "engine": settings.engine,
            "topics": settings.input_topics,
            "group": settings.consumer_group,
            "handled_types": registry.types(),
        },
    )
    worker.run_worker(settings, registry, serve=http_surface(settings))


JobsFileOption = Annotated[
    Path | None,
    env_option(
        "jobs_file",
        "--jobs-file",
        help="TOML file of cron jobs (see schedulers/jobs.py); cron_jobs rows are added to it.",
    ),
]


def make_scheduler(ctx: typer.Context, jobs_file: Path | None) -> Scheduler:
    if jobs_file is not None:
        ctx.obj["jobs_file"] = jobs_file
    settings = settings_of(ctx)
    return Scheduler(settings, settings.jobs_file)


@app.command("scheduler")
def scheduler_command(ctx: typer.Context, jobs_file: JobsFileOption = None) -> None:
    """Run cron jobs: scan Postgres and emit sync_required events to Kafka.

    Run as many as you like: one leads (a Postgres advisory lock), the others stand by
    and take over within seconds when it dies. Every tick is claimed in cron_runs, so
    none runs twice. Changes to cron_jobs apply without a restart. SIGINT/SIGTERM let a
    running scan finish its page, release leadership and exit.
    """
    scheduler = make_scheduler(ctx, jobs_file)

    async def main() -> None:
        grace = scheduler.settings.shutdown_timeout
        shutdown.stop_on_signals(scheduler.stopping, grace, "releasing leadership")
        await scheduler.run()

    asyncio.run(main())
    logging.getLogger(__name__).info("scheduler stopped", extra={"node": scheduler.node})


@app.command("run")
def run_command(
    ctx: typer.Context,
    jobs_file: JobsFileOption = None,
    handler_modules: HandlersOption = None,
    engine: EngineOption = None,
) -> None:
    """Scheduler and worker in one process, for small deployments and `make run`.

    Serves the worker's HTTP surface (see `cronstream worker --help`), with the cron and
    scanner metrics of this process's scheduler when it leads.
    """
    if engine is not None:
        ctx.obj["engine"] = engine
    scheduler = make_scheduler(ctx, jobs_file)
    settings = scheduler.settings
    registry = build_registry([*settings.handlers, *(handler_modules or [])])
    worker.run_worker(settings, registry, serve=http_surface(settings), companion=scheduler.run)


@contextmanager
def replay_progress(total: int) -> Iterator[Callable[[replay.Progress], None]]:
    """A progress bar on a terminal; otherwise a log line every few seconds."""
    if sys.stderr.isatty():
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("replay", total=total, rate="")
            yield lambda p: bar.update(task, completed=p.records, rate=f"{p.rate:.0f}/s")
        return
    last = time.monotonic()

    def log_progress(p: replay.Progress) -> None:
        nonlocal last
        if time.monotonic() - last >= REPLAY_LOG_EVERY or p.records >= p.total:
            last = time.monotonic()
            logging.getLogger(__name__).info(
                "replay progress: %d of %d records, %.0f records/s",
                p.records,
                p.total,
                p.rate,
                extra={"replay_id": p.replay_id, "done": p.records, "total": p.total},
            )

    yield log_progress


@app.command("replay")
def replay_command(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="Topic to replay. (required)")] = None,
    partitions: Annotated[
        str | None, typer.Option(help="Partitions to replay, e.g. 0,3. (default: all)")
    ] = None,
    from_offset: Annotated[
        int | None, typer.Option(help="First offset to replay, in each chosen partition.")
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            help="Replay from the first record stamped at or after this ISO 8601 time with "
            "UTC offset, e.g. 2026-11-27T09:00:00+00:00."
        ),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Replay from the oldest record kept.")
    ] = False,
    to_offset: Annotated[
        int | None,
        typer.Option(help="Last offset to replay, inclusive. (default: the log end at start)"),
    ] = None,
    to_time: Annotated[
        str | None,
        typer.Option(help="Replay the records stamped before this ISO 8601 time (UTC offset)."),
    ] = None,
    handler_modules: HandlersOption = None,
    external_topics: ExternalTopicsOption = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            help="Rebuild mode: a consumer name of its own (not the live group), with its own "
            "checkpoints, writing into --schema. (default: re-apply mode, the live group)"
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            help="Rebuild mode: the Postgres schema handlers write into, created if missing. "
            "(default: the --consumer name as an identifier, then _ and a hash of it; the "
            "plan prints it)"
        ),
    ] = None,
    like: Annotated[
        list[str] | None,
        typer.Option(
            "--like",
            help="Rebuild mode: a live table to create empty in --schema (LIKE ... INCLUDING "
            "ALL) if missing; repeatable. (default: entity_projection)",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (per partition: offsets, records, checkpoint change); "
            "write nothing.",
        ),
    ] = False,
    rate_limit: Annotated[
        float | None, typer.Option(help="At most this many records per second, on average.")
    ] = None,
) -> None:
    """Replay a range of a topic through the handlers, under the checkpoint protocol.

    **re-apply** (default): for the live consumer group (CRONSTREAM_CONSUMER_GROUP).
    Records of the range at or below a partition's checkpoint are applied again, once
    each, under the live checkpoint row locks (live workers wait, so it is safe while
    they run); records above it are applied once, by the replay or the live workers.
    Checkpoints never go down. Handlers that are not idempotent apply the range twice
    in total: that is the point of re-applying.

    **rebuild** (--consumer NAME): the same handlers under checkpoints of NAME, writing
    into --schema (each handler call runs with that schema as its search_path), so the
    live tables are untouched. Run it again to resume where it stopped.

    The range is read without a consumer group, up to the log end at the start. Progress
    shows on a terminal (a log line every 5 s otherwise); a summary line ends it, and a
    row in the replays table records it. Exit codes: 0 done; 1 failed or interrupted
    (SIGINT/SIGTERM stop after the in-flight batch; the hint says how to resume);
    2 invalid options, or a --schema another consumer's running replay writes into.
    """
    if external_topics is not None:  # the topic's format, as the worker reads it
        ctx.obj["external_topics"] = external_topics
    settings = settings_of(ctx)
    if topic is None:
        fail("--topic is required", 2)
    request = replay.check(replay.Asked.of(ctx.params), live_group=settings.consumer_group)
    if topic not in settings.input_topics:  # a dead-letter topic, say
        typer.echo(
            f"note: {topic} is not named in {env_var('external_topics')} (--external-topics): "
            "its records are read as envelopes",
            err=True,
        )
    modules = [*settings.handlers, *(handler_modules or [])]
    registry = build_registry(modules)
    plan = asyncio.run(replay.plan_replay(settings, request))
    for line in plan.lines():
        typer.echo(line, err=not dry_run)
    if dry_run:
        return

    async def main() -> replay.Progress:
        stopping = asyncio.Event()
        grace = settings.shutdown_timeout
        shutdown.stop_on_signals(stopping, grace, "stopping after the in-flight batch")
        with replay_progress(plan.total) as on_progress:
            replaying = replay.Replay(settings, registry, plan, modules, stopping, on_progress)
            return await replaying.run()

    done = asyncio.run(main())
    typer.echo(done.summary(topic))
    if done.status == "failed":
        fail(f"replay {done.replay_id} failed: {shown(done.error or '')}")
    if done.status == "interrupted":
        unfinished = done.unfinished(plan)
        for command in resume_commands(request, handler_modules, external_topics, unfinished):
            typer.echo(f"resume with: {command}", err=True)
        fail(f"replay {done.replay_id} interrupted")


def resume_commands(
    request: replay.Request,
    handler_modules: list[str] | None,
    external_topics: str | None,
    unfinished: list[tuple[int, int, int]],
) -> list[str]:
    """The commands, one a partition, that replay what an interrupted replay left: the
    same options, each partition from its next offset (quoted for a POSIX shell)."""
    asked = request.asked
    again = ["cronstream", "replay", "--topic", asked.topic]
    for module in handler_modules or []:
        again += ["--handlers", module]
    if external_topics is not None:
        again += ["--external-topics", external_topics]
    if asked.consumer is not None:
        again += ["--consumer", asked.consumer, "--schema", str(request.schema)]
        for table in request.like:
            again += ["--like", table]
    if asked.rate_limit is not None:
        again += ["--rate-limit", str(asked.rate_limit)]
    return [
        shlex.join(
            [*again, "--partitions", str(p), "--from-offset", str(first), "--to-offset", str(last)]
        )
        for p, first, last in unfinished
    ]


jobs_app = typer.Typer(
    help="Inspect cron jobs and preview schedules.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("next")
def jobs_next_command(
    expression: Annotated[
        str,
        typer.Argument(
            help="Cron expression: 5 fields, 6 with seconds first, or an alias like @hourly."
        ),
    ],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of the schedule.")] = "UTC",
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="ISO 8601 time with seconds and UTC offset, e.g. 2027-03-28T03:00:00+02:00. "
            "(default: now)",
        ),
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="How many fire times.")] = 5,
) -> None:
    """Print the next fire times strictly after --from, one a line, in the schedule's zone.

    Daylight-saving changes follow Vixie cron: a fixed-hour job in a skipped hour runs
    once right after the jump, once in a repeated hour; a job with a wildcard or step in
    the hour field follows elapsed time.
    """
    schedule = Schedule(expression, tz)
    if start is None:
        after = datetime.now(UTC)
    else:
        try:
            after = datetime.fromisoformat(start)
        except ValueError:
            fail(f"--from '{shown(start)}' is not an ISO 8601 time", 2)
        if after.tzinfo is None:
            fail(f"--from '{shown(start)}' needs a UTC offset, e.g. {shown(start)}+00:00", 2)
    instants = schedule.fire_times(after, count)  # a CronError when none is left before 9999
    for instant in instants:
        typer.echo(instant.astimezone(schedule.tz).isoformat())


@jobs_app.command("list")
def jobs_list_command(ctx: typer.Context, jobs_file: JobsFileOption = None) -> None:
    """Show each job's schedule, zone, misfire policy, last run and next run.

    Invalid cron_jobs rows are listed too, with the reason they do not run.
    """
    if jobs_file is not None:
        ctx.obj["jobs_file"] = jobs_file
    settings = settings_of(ctx)

    from_file = collect.file_jobs(settings.jobs_file)  # a bad file needs no database

    async def load() -> collect.Jobs:
        async with connection(settings) as db:
            return await collect.load_jobs(db, from_file)

    loaded = asyncio.run(load())
    jobs, invalid, latest = loaded.jobs, loaded.invalid, loaded.latest
    table = Table("job", "schedule", "zone", "misfire", "enabled", "last run", "next run")
    now = datetime.now(UTC)

    def last_run(name: str, tz: tzinfo) -> str:
        last = collect.last_run(latest.get(name), tz)
        return last.describe() if last is not None else "-"

    for job in jobs:
        try:
            upcoming = job.schedule.next_after(now).astimezone(job.schedule.tz).isoformat()
        except CronError as error:
            upcoming = f"error: {error}"
        table.add_row(
            *texts(
                job.name,
                job.schedule.expression,
                job.schedule.timezone,
                job.misfire_policy,
                "yes" if job.enabled else "no",
                last_run(job.name, job.schedule.tz),
                upcoming if job.enabled else "-",
            )
        )
    for name, problem in sorted(invalid.items()):
        cells = (name, "-", "-", "-", "invalid", last_run(name, UTC), f"not run: {problem}")
        table.add_row(*texts(*cells))
    Console(width=200).print(table)


@app.command("status")
def status_command(
    ctx: typer.Context,
    jobs_file: JobsFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show where the pipeline stands: per consumer, topic and partition the checkpoint,
    Kafka's log end and the lag between them; dead letters per topic (total, last hour);
    each job's last and next run, and which scheduler leads.

    Partitions of the consumer group's input topics without a checkpoint yet are shown
    too. A checkpoint beyond the log end (topic recreated, Kafka data lost) is flagged
    rather than shown as a lag. Postgres and Kafka get 5 s each.

    Exit codes: 0 all shown; 1 Postgres or Kafka unreachable (what the other one said is
    still shown); 2 invalid settings or jobs file.
    """
    if jobs_file is not None:
        ctx.obj["jobs_file"] = jobs_file
    settings = settings_of(ctx)
    # The error line below says what aiokafka's own connection errors would repeat.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    collected = asyncio.run(collect.collect(settings, settings.jobs_file))
    if as_json:
        typer.echo(json.dumps(collected.to_json(), indent=2))
    else:
        print_status(collected)
    if collected.unreachable:
        reasons = sorted(collected.unreachable.items())
        down = any("cronstream migrate" not in why for _, why in reasons)
        fail(
            "unreachable: "
            + "; ".join(f"{name} ({why})" for name, why in reasons)
            + (f" ({START_SERVICES})" if down else "")
        )
    if collected.jobs_error:
        fail(collected.jobs_error, 2)


def print_status(collected: collect.Status) -> None:
    """Tables of Text cells: topic names and errors are not rich markup."""
    console = Console(width=200)
    partitions = Table(
        "consumer",
        "topic",
        "partition",
        "checkpoint",
        "log end",
        "lag",
        "note",
        title="Partitions",
    )
    for p in collected.partitions:
        partitions.add_row(
            *texts(
                p.consumer,
                p.topic,
                str(p.partition),
                "-" if p.checkpoint is None else str(p.checkpoint),
                "-" if p.log_end is None else str(p.log_end),
                "-" if p.lag is None else str(p.lag),
                p.problem or "",
            )
        )
    console.print(partitions)
    dead = Table("topic", "dead letters", "last hour", title="Dead letters")
    for count in collected.dead_letter_counts:
        dead.add_row(*texts(count.topic, count.total, count.last_hour))
    console.print(dead)
    jobs = Table(
        "job",
        "schedule",
        "zone",
        "last run",
        "next run",
        "problem",
        title=Text(f"Jobs (scheduler leader: {collected.leader or 'none leads'})"),
    )
    for job in collected.jobs:
        last = job.last_run
        last_text = last.describe() if last is not None else "-"
        jobs.add_row(
            *texts(
                job.name,
                job.schedule or "-",
                job.timezone or "-",
                last_text,
                job.next_run.isoformat() if job.next_run else "-",
                job.problem or "",
            )
        )
    console.print(jobs)


def texts(*cells: object) -> list[Text]:
    """Table cells as plain text: job errors and topic names are untrusted, never markup."""
    return [Text(str(cell)) for cell in cells]


def main() -> None:
    app()
