"""`cronstream jobs next | list`: preview a schedule, list the jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer

from cronstream.cli.options import JobsFileOption, settings_of
from cronstream.runtime.instants import parse_instant
from cronstream.schedulers.cron import Schedule
from cronstream.status import collect, text

jobs_app = typer.Typer(
    help="Inspect cron jobs and preview schedules.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


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
    after = datetime.now(UTC) if start is None else parse_instant("--from", start)
    instants = schedule.fire_times(after, count)  # a CronError when none is left before 9999
    for instant in instants:
        typer.echo(instant.astimezone(schedule.tz).isoformat())


@jobs_app.command("list")
def jobs_list_command(ctx: typer.Context, jobs_file: JobsFileOption = None) -> None:
    """Show each job's schedule, zone, misfire policy, last run and next run.

    Invalid cron_jobs rows are listed too, with the reason they do not run.
    """
    settings = settings_of(ctx, jobs_file=jobs_file)
    text.print_jobs(asyncio.run(collect.collect_jobs(settings, settings.jobs_file)))
